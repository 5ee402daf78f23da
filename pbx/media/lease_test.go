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
