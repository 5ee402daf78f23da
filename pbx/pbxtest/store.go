// Package pbxtest holds test doubles for code that runs a real PBX in a
// test process.
package pbxtest

import (
	"sync"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// Store is a pbx.Store in memory: bindings and CDRs, nothing durable.
type Store struct {
	mu   sync.Mutex
	bs   map[string]location.Binding
	cdrs []cdr.Record
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{bs: map[string]location.Binding{}} }

func (m *Store) SaveBinding(b location.Binding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bs[b.AOR+"\x00"+b.Contact] = b
	return nil
}

func (m *Store) DeleteBinding(aor, contact string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.bs, aor+"\x00"+contact)
	return nil
}

// LoadBindings returns nothing: a PBX on a Store starts empty.
func (m *Store) LoadBindings() ([]location.Binding, error) { return nil, nil }

func (m *Store) AppendCDR(r cdr.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cdrs = append(m.cdrs, r)
	return nil
}

// CDR returns the first record for which match holds.
func (m *Store) CDR(match func(cdr.Record) bool) (cdr.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.cdrs {
		if match(r) {
			return r, true
		}
	}
	return cdr.Record{}, false
}
