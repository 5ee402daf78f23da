package media

import (
	"errors"
	"net/netip"
	"testing"
)

// TestLease: a lease takes a pair of the range that sessions then do not
// get, gives it back once however often it is released, and a full range
// or a closed relay refuses one.
func TestLease(t *testing.T) {
	r := newTestRelay(t, 48100, 48105) // three pairs
	if n := r.Free(); n != 3 {
		t.Fatalf("%d free pairs, want 3", n)
	}
	l, err := r.Lease()
	if err != nil {
		t.Fatal(err)
	}
	if p := l.Port(); p < 48100 || p > 48104 || p%2 != 0 {
		t.Fatalf("leased port %d, not an even port of 48100-48105", p)
	}
	if got, want := l.RTP().LocalAddr().String(), netip.AddrPortFrom(loopback, uint16(l.Port())).String(); got != want {
		t.Errorf("RTP socket bound to %s, want port %d on %s", got, l.Port(), loopback)
	}
	if n := r.Free(); n != 2 {
		t.Fatalf("%d free pairs with one leased, want 2", n)
	}
	s, err := r.Open("call")
	if err != nil {
		t.Fatal(err)
	}
	if s.Port(A) == l.Port() || s.Port(B) == l.Port() {
		t.Fatalf("session on ports %d/%d shares the leased %d", s.Port(A), s.Port(B), l.Port())
	}
	if _, err := r.Lease(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("lease of a full range: %v, want ErrNoPorts", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if n := r.Free(); n != 1 {
		t.Fatalf("%d free pairs after the release, want 1 (counted once)", n)
	}
	// The port can be bound again: the sockets are closed.
	l2, err := r.Lease()
	if err != nil {
		t.Fatalf("leasing the released pair: %v", err)
	}
	if l2.Port() != l.Port() {
		t.Errorf("leased %d, want the released %d back", l2.Port(), l.Port())
	}
	l2.Release()
	s.Close()
	r.Close()
	if _, err := r.Lease(); !errors.Is(err, ErrClosed) {
		t.Errorf("lease of a closed relay: %v, want ErrClosed", err)
	}
}

// TestLeaseAt: a lease of a given port takes exactly that pair, which
// neither Lease nor a session then gets; a port held, outside the range,
// odd, or on a closed relay is refused, and a released one can be taken
// again.
func TestLeaseAt(t *testing.T) {
	r := newTestRelay(t, 48200, 48205) // pairs 48200, 48202, 48204
	l, err := r.LeaseAt(48202)
	if err != nil {
		t.Fatal(err)
	}
	if l.Port() != 48202 {
		t.Fatalf("leased port %d, want 48202", l.Port())
	}
	if got, want := l.RTP().LocalAddr().String(), netip.AddrPortFrom(loopback, 48202).String(); got != want {
		t.Errorf("RTP socket bound to %s, want %s", got, want)
	}
	if n := r.Free(); n != 2 {
		t.Fatalf("%d free pairs with one leased, want 2", n)
	}
	s, err := r.Open("call")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Port(A) == 48202 || s.Port(B) == 48202 {
		t.Fatalf("session on ports %d/%d shares the leased 48202", s.Port(A), s.Port(B))
	}
	for _, tc := range []struct {
		name string
		port int
	}{
		{"leased already", 48202},
		{"held by a session", s.Port(A)},
		{"below the range", 48198},
		{"above the range", 48206},
		{"odd (an RTCP port)", 48203},
		{"zero", 0},
		{"negative", -2},
	} {
		if l2, err := r.LeaseAt(tc.port); err == nil {
			l2.Release()
			t.Errorf("%s: port %d leased, want an error", tc.name, tc.port)
		}
	}
	if n := r.Free(); n != 0 {
		t.Fatalf("%d free pairs after refused leases, want 0", n)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := r.LeaseAt(48202)
	if err != nil {
		t.Fatalf("leasing the released pair again: %v", err)
	}
	l2.Release()
	r.Close()
	if _, err := r.LeaseAt(48202); !errors.Is(err, ErrClosed) {
		t.Fatalf("lease of a closed relay: %v, want ErrClosed", err)
	}
}
