package media

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
)

// TestJoin: two calls share a party (A1 = A2, the transferor); joining
// B's leg of the first with C's leg of the second connects B and C on the
// ports they already send to, both ways, RTP and RTCP, and frees the
// transferor's two pairs.
func TestJoin(t *testing.T) {
	r := newTestRelay(t, 47000, 47011) // three calls' worth of pairs
	a1, b, a2, c := newPhone(t), newPhone(t), newPhone(t), newPhone(t)
	s1, _, forB := call(t, r, "call-1", a1, b)
	s2, _, forC := call(t, r, "call-2", a2, c)
	// One packet each way before the join latches B and C.
	send(t, b.rtp, forB, rtpPacket(t, 0, 1, 0xb, []byte{1}))
	recv(t, a1.rtp)
	send(t, c.rtp, forC, rtpPacket(t, 0, 1, 0xc, []byte{2}))
	recv(t, a2.rtp)

	s, err := r.Join("call-1", s1, B, s2, B)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Port(A) != int(forB.Port()) || s.Port(B) != int(forC.Port()) {
		t.Fatalf("joined ports %d/%d, want B's %d and C's %d", s.Port(A), s.Port(B), forB.Port(), forC.Port())
	}
	if r.Sessions() != 1 {
		t.Errorf("%d sessions after the join, want 1", r.Sessions())
	}
	tests := []struct {
		name     string
		from     *net.UDPConn
		to       netip.AddrPort
		want     *net.UDPConn
		pkt      []byte
		wantFrom netip.AddrPort
	}{
		{"RTP B to C", b.rtp, forB, c.rtp, rtpPacket(t, 0, 2, 0xb, bytes.Repeat([]byte{0x7f}, 160)), forC},
		{"RTP C to B", c.rtp, forC, b.rtp, rtpPacket(t, 0, 2, 0xc, bytes.Repeat([]byte{0xff}, 160)), forB},
		{"RTCP B to C", b.rtcp, rtcpOf(forB), c.rtcp, rtcpPacket(0xb), rtcpOf(forC)},
		{"RTCP C to B", c.rtcp, rtcpOf(forC), b.rtcp, rtcpPacket(0xc), rtcpOf(forB)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send(t, tt.from, tt.to, tt.pkt)
			got, src := recv(t, tt.want)
			if !bytes.Equal(got, tt.pkt) || src != tt.wantFrom {
				t.Errorf("got %x from %v, want %x from %v", got, src, tt.pkt, tt.wantFrom)
			}
		})
	}
	expectNothing(t, a1.rtp)
	expectNothing(t, a2.rtp)
	// The old sessions' Close is harmless and frees nothing the joined one
	// uses; the transferor's two pairs are free for new calls.
	if err := errors.Join(s1.Close(), s2.Close()); err != nil {
		t.Errorf("closing the joined sessions: %v", err)
	}
	s3, err := r.Open("call-3")
	if err != nil {
		t.Fatalf("a new call after the join: %v", err)
	}
	defer s3.Close()
	s4, err := r.Open("call-4")
	if err != nil {
		t.Fatalf("a second new call after the join: %v", err)
	}
	defer s4.Close()
	if _, err := r.Open("call-5"); !errors.Is(err, ErrNoPorts) {
		t.Errorf("a fifth call: err = %v, want ErrNoPorts (the joined call keeps two pairs)", err)
	}
	st := s.State()
	if st.ID != "call-1" || int(st.Legs[A].LatchedRTP.Port()) != port(b.rtp) || int(st.Legs[B].LatchedRTP.Port()) != port(c.rtp) {
		t.Errorf("joined state %+v: want B latched on A, C on B", st)
	}
}

func TestJoinErrors(t *testing.T) {
	r := newTestRelay(t, 47100, 47111)
	a, b := newPhone(t), newPhone(t)
	s1, _, _ := call(t, r, "call-1", a, b)
	s2, _, _ := call(t, r, "call-2", a, b)
	closed, _, _ := call(t, r, "call-3", a, b)
	closed.Close()
	tests := []struct {
		name   string
		s1, s2 *Session
		l1     Leg
		id     string
	}{
		{"same session", s1, s1, A, "call-1"},
		{"nil session", s1, nil, A, "call-1"},
		{"bad leg", s1, s2, Leg(7), "call-1"},
		{"closed session", s1, closed, A, "call-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.Join(tt.id, tt.s1, tt.l1, tt.s2, B); err == nil {
				t.Fatal("joined")
			}
		})
	}
	if r.Sessions() != 2 {
		t.Errorf("%d sessions after failed joins, want the 2 untouched", r.Sessions())
	}
}
