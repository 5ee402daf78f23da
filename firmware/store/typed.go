package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// Buckets of the typed API. Replication sees these names in Changes.
const (
	BucketConfig   = "config"   // key: version, 20 digits; value: the YAML text
	BucketBindings = "bindings" // key: aor NUL contact; value: location.Binding as JSON
	BucketCDRs     = "cdrs"     // key: start (UTC, fixed width) NUL id; value: cdr.Record as JSON
	BucketDialogs  = "dialogs"  // key: dialog id; value: opaque state
)

var (
	_ location.Persister      = (*Store)(nil)
	_ location.BatchPersister = (*Store)(nil)
)

func configKey(version uint64) string { return fmt.Sprintf("%020d", version) }

// SaveConfig stores version of the config. Every version is kept. version
// must be above every stored one; saving the newest version again with the
// same text is a no-op (so a retried import is harmless).
func (s *Store) SaveConfig(yamlText []byte, version uint64) error {
	if version == 0 {
		return fmt.Errorf("saving config: version 0 is not a version")
	}
	return s.Update(func(t *Tx) error {
		latest, text, err := latestConfig(t)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && version == latest && string(text) == string(yamlText) {
			return nil
		}
		if err == nil && version <= latest {
			return fmt.Errorf("saving config version %d: not newer than stored version %d", version, latest)
		}
		if err := t.Put(BucketConfig, configKey(version), yamlText); err != nil {
			return fmt.Errorf("saving config version %d: %w", version, err)
		}
		return nil
	})
}

// LatestConfig returns the newest config version and its text, or
// ErrNotFound when none is stored.
func (s *Store) LatestConfig() (version uint64, yamlText []byte, err error) {
	err = s.View(func(t *Tx) error {
		version, yamlText, err = latestConfig(t)
		return err
	})
	return version, yamlText, err
}

func latestConfig(t *Tx) (uint64, []byte, error) {
	b := t.tx.Bucket([]byte(BucketConfig))
	if b == nil {
		return 0, nil, ErrNotFound
	}
	k, v := b.Cursor().Last()
	if k == nil {
		return 0, nil, ErrNotFound
	}
	ver, err := strconv.ParseUint(string(k), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("reading config version key %q: %w", k, err)
	}
	return ver, append([]byte{}, v...), nil
}

// Config returns the text of one stored config version, or ErrNotFound.
func (s *Store) Config(version uint64) ([]byte, error) {
	var text []byte
	err := s.View(func(t *Tx) error {
		text = t.Get(BucketConfig, configKey(version))
		if text == nil {
			return fmt.Errorf("config version %d: %w", version, ErrNotFound)
		}
		return nil
	})
	return text, err
}

// ConfigVersions lists the stored config versions, oldest first.
func (s *Store) ConfigVersions() ([]uint64, error) {
	var out []uint64
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketConfig, "", "", func(k string, _ []byte) error {
			v, err := strconv.ParseUint(k, 10, 64)
			if err != nil {
				return fmt.Errorf("reading config version key %q: %w", k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

func bindingKey(aor, contact string) string { return aor + "\x00" + contact }

// SaveBinding stores (or replaces) a location binding.
func (s *Store) SaveBinding(b location.Binding) error { return s.SaveBindings([]location.Binding{b}) }

// SaveBindings stores (or replaces) several bindings in one durable write.
func (s *Store) SaveBindings(bs []location.Binding) error {
	vs := make([][]byte, len(bs))
	for i, b := range bs {
		if b.AOR == "" || b.Contact == "" || strings.Contains(b.AOR, "\x00") {
			return fmt.Errorf("saving binding %q of %q: AOR and contact must be given", b.Contact, b.AOR)
		}
		v, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encoding binding %s of %s: %w", b.Contact, b.AOR, err)
		}
		vs[i] = v
	}
	return s.groupUpdate(func(t *Tx) error {
		for i, b := range bs {
			if err := t.Put(BucketBindings, bindingKey(b.AOR, b.Contact), vs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteBinding removes a binding; removing one that is not stored is fine.
func (s *Store) DeleteBinding(aor, contact string) error {
	if aor == "" || contact == "" {
		return nil
	}
	return s.groupUpdate(func(t *Tx) error { return t.Delete(BucketBindings, bindingKey(aor, contact)) })
}

// LoadBindings returns every stored binding, expired or not, ordered by
// AOR and contact.
func (s *Store) LoadBindings() ([]location.Binding, error) {
	var out []location.Binding
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketBindings, "", "", func(k string, v []byte) error {
			var b location.Binding
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("reading binding %q: %w", k, err)
			}
			out = append(out, b)
			return nil
		})
	})
	return out, err
}

// cdrTimeLayout sorts as text in time order for years 0000-9999.
const cdrTimeLayout = "2006-01-02T15:04:05.000000000Z"

func cdrTime(t time.Time) (string, error) {
	u := t.UTC()
	if u.Year() < 0 || u.Year() > 9999 {
		return "", fmt.Errorf("time %v out of range", t)
	}
	return u.Format(cdrTimeLayout), nil
}

// AppendCDR stores a call record, keyed by its start time and ID so that
// records come back in start order. Storing the same record again
// replaces it.
func (s *Store) AppendCDR(r cdr.Record) error {
	if r.ID == "" {
		return fmt.Errorf("saving CDR: no ID")
	}
	ts, err := cdrTime(r.Start)
	if err != nil {
		return fmt.Errorf("saving CDR %s: start %w", r.ID, err)
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding CDR %s: %w", r.ID, err)
	}
	return s.groupUpdate(func(t *Tx) error { return t.Put(BucketCDRs, ts+"\x00"+r.ID, v) })
}

// CDRs returns the records that started in [from, to), in start order (ties
// by ID). A zero to means no upper bound.
func (s *Store) CDRs(from, to time.Time) ([]cdr.Record, error) {
	lo, hi := "", ""
	var err error
	if !from.IsZero() {
		if lo, err = cdrTime(from); err != nil {
			return nil, fmt.Errorf("listing CDRs: from %w", err)
		}
	}
	if !to.IsZero() {
		if hi, err = cdrTime(to); err != nil {
			return nil, fmt.Errorf("listing CDRs: to %w", err)
		}
		if hi <= lo {
			return nil, nil
		}
	}
	var out []cdr.Record
	err = s.View(func(t *Tx) error {
		return t.ForEach(BucketCDRs, lo, hi, func(k string, v []byte) error {
			var r cdr.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("reading CDR %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// PutDialog stores the opaque state of a call in progress.
func (s *Store) PutDialog(id string, state []byte) error {
	return s.groupUpdate(func(t *Tx) error { return t.Put(BucketDialogs, id, state) })
}

// DeleteDialog removes a dialog's state; removing one not stored is fine.
func (s *Store) DeleteDialog(id string) error {
	return s.groupUpdate(func(t *Tx) error { return t.Delete(BucketDialogs, id) })
}

// Dialogs returns every stored dialog state by id.
func (s *Store) Dialogs() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketDialogs, "", "", func(k string, v []byte) error {
			out[k] = append([]byte{}, v...)
			return nil
		})
	})
	return out, err
}
