package appliance

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/site"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/location"
)

func freePort(t *testing.T) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			u.Close()
			return p
		}
	}
}

// TestSiteStoreTellsTheSite checks the wiring of a site box's store: every
// way a binding is written or removed reaches the site table, and the
// location service finds through it what the table holds for other boxes.
func TestSiteStoreTellsTheSite(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	old := location.Binding{AOR: "102", Contact: "sip:102@10.0.0.5", Source: "udp:10.0.0.5:5060", Expires: time.Now().Add(time.Hour)}
	if err := st.SaveBinding(old); err != nil {
		t.Fatal(err)
	}
	cfg := config.Site{Name: "solo", Bind: "127.0.0.1", GossipPort: freePort(t), RaftPort: freePort(t), Key: "test-site-key-0123456789", Expect: 1, RemoveAfter: config.Duration(time.Second)}
	s, err := site.Start(context.Background(), site.Options{Config: cfg, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Tick: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ps := siteStore{st, s}
	loc, err := location.New(ps, nil) // loads old: the site learns of it
	if err != nil {
		t.Fatal(err)
	}
	a := location.Binding{AOR: "100", Contact: "sip:100@10.0.0.1", Source: "udp:10.0.0.1:5060", Expires: time.Now().Add(time.Hour)}
	b := location.Binding{AOR: "101", Contact: "sip:101@10.0.0.2", Source: "udp:10.0.0.2:5060", Expires: time.Now().Add(time.Hour)}
	if err := loc.Put(a, 0); err != nil {
		t.Fatal(err)
	}
	if err := ps.SaveBindings([]location.Binding{b}); err != nil {
		t.Fatal(err)
	}
	if err := loc.Remove(old.AOR, old.Contact); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		owned := s.Table().Owned("solo")
		_, hasA := owned[site.Key{AOR: "100", Contact: a.Contact}]
		_, hasB := owned[site.Key{AOR: "101", Contact: b.Contact}]
		_, hasOld := owned[site.Key{AOR: "102", Contact: old.Contact}]
		if hasA && hasB && !hasOld && len(owned) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("site table holds %v, want 100 and 101 only (status %+v)", owned, s.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := st.LoadBindings(); err != nil || len(got) != 2 {
		t.Errorf("store holds %v (%v), want the two live bindings", got, err)
	}
	// The box's own bindings are served locally, never from the table.
	if got := loc.Lookup("100"); len(got) != 1 || got[0].Contact != a.Contact {
		t.Errorf("Lookup(100) = %v", got)
	}
	if got := loc.Lookup("103"); len(got) != 0 {
		t.Errorf("Lookup(103) = %v, want nothing", got)
	}
}
