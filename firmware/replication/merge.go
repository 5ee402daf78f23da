package replication

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// MergeReport says what Merge took from the remote store.
type MergeReport struct {
	// ConfigVersions copied from remote (newer than local's newest).
	ConfigVersions []uint64
	// ConfigConflict: both hold the same newest version with different
	// text; local's was kept. Raise the "config conflict" alarm.
	ConfigConflict bool
	// ConfigVersion is the version both sides had when they conflicted.
	ConfigVersion uint64
	// Bindings taken from remote (new, or updated later than local's).
	Bindings int
	// CDRs taken from remote (records local did not have).
	CDRs int
	// CDRsDiffering: records both hold under the same key with different
	// content; local's were kept.
	CDRsDiffering int
}

// Merge brings into local what remote holds after both twins were active
// (split brain), by the rules of docs/CLUSTER.md "Merge rules": CDRs are
// united; per binding (AOR and contact) the newer Updated wins; the config
// with the higher version wins, and equal versions with different text
// keep local's and report a conflict. Dialog state is not merged: calls
// the other twin carried are gone once one of them stops serving. remote
// is only read. Writes to local go through its Update, so they replicate
// like any other write.
func Merge(local, remote *store.Store) (MergeReport, error) {
	var rep MergeReport
	if err := mergeConfig(local, remote, &rep); err != nil {
		return rep, err
	}
	if err := mergeBindings(local, remote, &rep); err != nil {
		return rep, err
	}
	if err := mergeCDRs(local, remote, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func mergeConfig(local, remote *store.Store, rep *MergeReport) error {
	rv, rtext, err := remote.LatestConfig()
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("merging config: reading the twin's: %w", err)
	}
	lv, ltext, err := local.LatestConfig()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("merging config: reading ours: %w", err)
	}
	switch {
	case rv < lv:
		return nil
	case rv == lv:
		if !bytes.Equal(rtext, ltext) {
			rep.ConfigConflict, rep.ConfigVersion = true, lv
		}
		return nil
	}
	versions, err := remote.ConfigVersions()
	if err != nil {
		return fmt.Errorf("merging config: listing the twin's versions: %w", err)
	}
	for _, v := range versions {
		if v <= lv {
			continue
		}
		text, err := remote.Config(v)
		if err != nil {
			return fmt.Errorf("merging config: reading the twin's version %d: %w", v, err)
		}
		if err := local.SaveConfig(text, v); err != nil {
			return fmt.Errorf("merging config: %w", err)
		}
		rep.ConfigVersions = append(rep.ConfigVersions, v)
	}
	return nil
}

func mergeBindings(local, remote *store.Store, rep *MergeReport) error {
	theirs, err := remote.LoadBindings()
	if err != nil {
		return fmt.Errorf("merging bindings: reading the twin's: %w", err)
	}
	ours, err := local.LoadBindings()
	if err != nil {
		return fmt.Errorf("merging bindings: reading ours: %w", err)
	}
	updated := make(map[[2]string]time.Time, len(ours))
	for _, b := range ours {
		updated[[2]string{b.AOR, b.Contact}] = b.Updated
	}
	for _, b := range theirs {
		if u, ok := updated[[2]string{b.AOR, b.Contact}]; ok && !b.Updated.After(u) {
			continue
		}
		if err := local.SaveBinding(b); err != nil {
			return fmt.Errorf("merging bindings: %w", err)
		}
		rep.Bindings++
	}
	return nil
}

func mergeCDRs(local, remote *store.Store, rep *MergeReport) error {
	theirs, err := remote.CDRs(time.Time{}, time.Time{})
	if err != nil {
		return fmt.Errorf("merging CDRs: reading the twin's: %w", err)
	}
	ours, err := local.CDRs(time.Time{}, time.Time{})
	if err != nil {
		return fmt.Errorf("merging CDRs: reading ours: %w", err)
	}
	// The store keys a record by start time and ID.
	key := func(r cdr.Record) string { return r.Start.UTC().Format(time.RFC3339Nano) + "\x00" + r.ID }
	have := make(map[string][]byte, len(ours))
	for _, r := range ours {
		b, _ := json.Marshal(r)
		have[key(r)] = b
	}
	for _, r := range theirs {
		if b, ok := have[key(r)]; ok {
			if rb, _ := json.Marshal(r); !bytes.Equal(b, rb) {
				rep.CDRsDiffering++
			}
			continue
		}
		if err := local.AppendCDR(r); err != nil {
			return fmt.Errorf("merging CDRs: %w", err)
		}
		rep.CDRs++
	}
	return nil
}
