package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// Entry is one registration in the site table: a binding and the box that
// holds it.
type Entry struct {
	Owner string `json:"owner"`
	location.Binding
}

// Key names one binding of one box.
type Key struct {
	AOR     string `json:"aor"`
	Contact string `json:"contact"`
}

// Command operations.
const (
	// opSync writes one box's changes: bindings it made or refreshed and
	// bindings it removed.
	opSync = "sync"
	// opExpire drops every binding that ended before a time the leader
	// chose, so every box drops the same ones.
	opExpire = "expire"
)

// command is one entry of the replicated log, JSON-encoded.
type command struct {
	Op     string             `json:"op"`
	Owner  string             `json:"owner,omitempty"`
	Put    []location.Binding `json:"put,omitempty"`
	Delete []Key              `json:"delete,omitempty"`
	Before time.Time          `json:"before,omitzero"`
}

// Limits of one command, so a box with many changes sends them in parts
// and one log entry stays small.
const (
	maxPerCommand = 256
	maxField      = 1024 // bytes of an AOR, contact or owner name
)

// decodeCommand parses and checks one log entry.
func decodeCommand(data []byte) (command, error) {
	var c command
	if err := json.Unmarshal(data, &c); err != nil {
		return command{}, fmt.Errorf("decoding a site command: %w", err)
	}
	if err := c.check(); err != nil {
		return command{}, err
	}
	return c, nil
}

func (c command) check() error {
	switch c.Op {
	case opSync:
		if c.Owner == "" || len(c.Owner) > maxField {
			return errors.New("site command: a sync names no owner, or one too long")
		}
		if len(c.Put) > maxPerCommand || len(c.Delete) > maxPerCommand {
			return fmt.Errorf("site command: more than %d changes in one sync", maxPerCommand)
		}
		for _, b := range c.Put {
			if err := checkKey(b.AOR, b.Contact); err != nil {
				return err
			}
		}
		for _, k := range c.Delete {
			if err := checkKey(k.AOR, k.Contact); err != nil {
				return err
			}
		}
	case opExpire:
		if c.Before.IsZero() {
			return errors.New("site command: an expire without a time")
		}
	default:
		return fmt.Errorf("site command: unknown operation %q", c.Op)
	}
	return nil
}

func checkKey(aor, contact string) error {
	if aor == "" || contact == "" || len(aor) > maxField || len(contact) > maxField {
		return fmt.Errorf("site command: binding %q of %q: empty or too long", contact, aor)
	}
	return nil
}

// entryKey identifies an entry within its AOR.
type entryKey struct{ owner, contact string }

// Table is the site's shared location table: every box's registrations.
// It is the raft FSM: the leader's log writes it, in the same order on
// every box, and each box reads its own copy. It is safe for concurrent
// use.
type Table struct {
	mu    sync.RWMutex
	byAOR map[string]map[entryKey]Entry
	n     int
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{byAOR: map[string]map[entryKey]Entry{}} }

// apply carries out one checked command.
func (t *Table) apply(c command) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch c.Op {
	case opSync:
		for _, k := range c.Delete {
			t.del(k.AOR, entryKey{c.Owner, k.Contact})
		}
		for _, b := range c.Put {
			m := t.byAOR[b.AOR]
			if m == nil {
				m = map[entryKey]Entry{}
				t.byAOR[b.AOR] = m
			}
			k := entryKey{c.Owner, b.Contact}
			if _, ok := m[k]; !ok {
				t.n++
			}
			m[k] = Entry{Owner: c.Owner, Binding: b}
		}
	case opExpire:
		for aor, m := range t.byAOR {
			for k, e := range m {
				if !e.Expires.After(c.Before) {
					t.del(aor, k)
				}
			}
		}
	}
}

func (t *Table) del(aor string, k entryKey) {
	m := t.byAOR[aor]
	if _, ok := m[k]; !ok {
		return
	}
	delete(m, k)
	t.n--
	if len(m) == 0 {
		delete(t.byAOR, aor)
	}
}

// Lookup returns the live bindings of aor held by boxes other than
// except. A phone known to several boxes (it moved) is returned once, as
// the box that saw it last has it.
func (t *Table) Lookup(aor, except string, now time.Time) []location.Binding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []location.Binding
	for k, e := range t.byAOR[aor] {
		if k.owner == except || !e.Expires.After(now) {
			continue
		}
		b := e.Binding
		b.Holder = e.Owner
		i := slices.IndexFunc(out, func(b location.Binding) bool { return b.Contact == e.Contact })
		switch {
		case i < 0:
			out = append(out, b)
		case b.Updated.After(out[i].Updated):
			out[i] = b
		}
	}
	location.SortBindings(out)
	return out
}

// Owned returns the bindings the table holds for one box.
func (t *Table) Owned(owner string) map[Key]location.Binding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[Key]location.Binding{}
	for aor, m := range t.byAOR {
		for k, e := range m {
			if k.owner == owner {
				out[Key{aor, k.contact}] = e.Binding
			}
		}
	}
	return out
}

// Entries returns every entry, ordered by AOR, contact and owner.
func (t *Table) Entries() []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, t.n)
	for _, m := range t.byAOR {
		for _, e := range m {
			out = append(out, e)
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if c := strings.Compare(a.AOR, b.AOR); c != 0 {
			return c < 0
		}
		if c := strings.Compare(a.Contact, b.Contact); c != 0 {
			return c < 0
		}
		return a.Owner < b.Owner
	})
	return out
}

// Len is the number of entries.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Apply implements raft.FSM. A log entry that does not decode is skipped
// (and its error returned to whoever applied it): every box skips it alike.
func (t *Table) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		return err
	}
	t.apply(c)
	return nil
}

// snapshot is the table as written by Snapshot.
type snapshot struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

const snapshotVersion = 1

// Snapshot implements raft.FSM.
func (t *Table) Snapshot() (raft.FSMSnapshot, error) {
	return tableSnapshot{Version: snapshotVersion, Entries: t.Entries()}, nil
}

type tableSnapshot snapshot

func (s tableSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(snapshot(s)); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("writing the site table snapshot: %w", err)
	}
	return sink.Close()
}

func (tableSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the table with a snapshot's.
// A snapshot that does not read leaves the table as it was.
func (t *Table) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	byAOR, n, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.byAOR, t.n = byAOR, n
	t.mu.Unlock()
	return nil
}

func readSnapshot(r io.Reader) (map[string]map[entryKey]Entry, int, error) {
	var s snapshot
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return nil, 0, fmt.Errorf("reading a site table snapshot: %w", err)
	}
	if s.Version != snapshotVersion {
		return nil, 0, fmt.Errorf("reading a site table snapshot: version %d, want %d", s.Version, snapshotVersion)
	}
	byAOR := map[string]map[entryKey]Entry{}
	n := 0
	for _, e := range s.Entries {
		if e.Owner == "" {
			return nil, 0, fmt.Errorf("reading a site table snapshot: binding %q of %q has no owner", e.Contact, e.AOR)
		}
		if err := checkKey(e.AOR, e.Contact); err != nil {
			return nil, 0, fmt.Errorf("reading a site table snapshot: %w", err)
		}
		m := byAOR[e.AOR]
		if m == nil {
			m = map[entryKey]Entry{}
			byAOR[e.AOR] = m
		}
		k := entryKey{e.Owner, e.Contact}
		if _, dup := m[k]; !dup {
			n++
		}
		m[k] = e
	}
	return byAOR, n, nil
}
