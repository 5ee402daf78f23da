package location

import (
	"testing"
	"time"
)

// memStore is a Persister in memory, written underneath a Service the way
// replication writes a standby's store.
type memStore struct{ bs map[string]Binding }

func (m *memStore) SaveBinding(b Binding) error { m.bs[b.AOR+"|"+b.Contact] = b; return nil }
func (m *memStore) DeleteBinding(aor, contact string) error {
	delete(m.bs, aor+"|"+contact)
	return nil
}
func (m *memStore) LoadBindings() ([]Binding, error) {
	var out []Binding
	for _, b := range m.bs {
		out = append(out, b)
	}
	return out, nil
}

func TestReloadSeesBindingsWrittenUnderneath(t *testing.T) {
	now := time.Unix(10000, 0)
	st := &memStore{bs: map[string]Binding{}}
	s, err := New(st, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	live := Binding{AOR: "100", Contact: "sip:100@10.0.0.1", Expires: now.Add(time.Hour)}
	dead := Binding{AOR: "101", Contact: "sip:101@10.0.0.2", Expires: now.Add(-time.Second)}
	_ = st.SaveBinding(live)
	_ = st.SaveBinding(dead)
	if got := s.Lookup("100"); len(got) != 0 {
		t.Fatalf("before Reload the table already holds %v", got)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.Lookup("100"); len(got) != 1 || got[0].Contact != live.Contact {
		t.Errorf("after Reload Lookup(100) = %v", got)
	}
	if len(s.All()) != 1 {
		t.Errorf("after Reload All = %v, want only the live binding", s.All())
	}
	if len(st.bs) != 2 {
		t.Errorf("Reload wrote to the store: %v", st.bs)
	}
}
