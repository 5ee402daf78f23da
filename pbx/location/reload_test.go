package location

import (
	"testing"
	"time"
)

func TestReloadSeesBindingsWrittenUnderneath(t *testing.T) {
	now := time.Unix(10000, 0)
	st := newMemStore() // written underneath the Service, as replication writes a standby's store
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
