package location

import (
	"sync"
	"testing"
	"time"
)

// deleteHook is a memStore that runs onDelete (once) before its first
// deletion.
type deleteHook struct {
	*memStore
	once     sync.Once
	onDelete func(aor string)
}

func (d *deleteHook) DeleteBinding(aor, contact string) error {
	d.once.Do(func() { d.onDelete(aor) })
	return d.memStore.DeleteBinding(aor, contact)
}

// TestExpireKeepsABindingRefreshedMeanwhile: a phone that registers again
// between Expire's scan and the removal of its expired binding keeps the
// new binding, in the table and in the store.
func TestExpireKeepsABindingRefreshedMeanwhile(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := t0.Add(-2 * time.Hour)
	m := newMemStore()
	d := &deleteHook{memStore: m}
	s, err := New(d, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]Binding{
		"100": {AOR: "100", Contact: "sip:100@192.0.2.1", Expires: t0.Add(-time.Second)},
		"200": {AOR: "200", Contact: "sip:200@192.0.2.2", Expires: t0.Add(-time.Second)},
	}
	if s.aorLock("100") == s.aorLock("200") {
		t.Fatal("the test needs two AORs with different locks")
	}
	for _, b := range old {
		if err := s.Put(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	now = t0
	var refreshed Binding
	d.onDelete = func(aor string) {
		// The other AOR's phone registers again while the first
		// expired binding is being deleted.
		other := "100"
		if aor == "100" {
			other = "200"
		}
		refreshed = old[other]
		refreshed.Expires = t0.Add(time.Hour)
		if err := s.Put(refreshed, 0); err != nil {
			t.Errorf("refreshing %s: %v", other, err)
		}
	}
	n, err := s.Expire()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Expire removed %d bindings, want 1", n)
	}
	if _, ok := s.Get(refreshed.AOR, refreshed.Contact); !ok {
		t.Errorf("the binding of %s refreshed during Expire is gone from the table", refreshed.AOR)
	}
	if _, ok := m.stored(refreshed.AOR, refreshed.Contact); !ok {
		t.Errorf("the binding of %s refreshed during Expire is gone from the store", refreshed.AOR)
	}
}
