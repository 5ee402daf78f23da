package heartbeat

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"
)

// TestFreshness drives one path's receive logic with hand-made beats, step
// by step, and checks what is accepted and what the next beat will echo.
func TestFreshness(t *testing.T) {
	h, err := New(Config{
		Node: "b", Key: testKey, Interval: time.Hour, DeadTime: 2 * time.Hour,
		Paths: []Path{{Name: "crossover", Local: netip.MustParseAddrPort("127.0.0.1:0"), Peer: netip.MustParseAddrPort("127.0.0.1:9")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.mu.Lock()
		h.closed = true
		if h.paths[0].dead != nil {
			h.paths[0].dead.Stop()
		}
		h.mu.Unlock()
		h.Close()
	})
	p := h.paths[0]
	aead, _ := newAEAD(testKey)
	from := netip.MustParseAddrPort("127.0.0.1:7450")
	_, now := h.clock()
	p.seq = 20 // we have sent beats 1..20

	const inc1, inc2 = 111, 222
	echoSent := now - 1000
	beat := func(inc, seq uint64, sent int64, echoInc, echoSeq uint64) []byte {
		pkt := packet{Node: "a", Path: "crossover", Incarnation: inc, Seq: seq, Sent: sent,
			Echo: echo{Incarnation: echoInc, Seq: echoSeq, Sent: echoSent, Term: 3}}
		b, err := seal(aead, rand.Reader, &pkt)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type outcome int
	const (
		accepted outcome = iota
		unverified
		replay
	)
	me := h.incarnation
	steps := []struct {
		name     string
		dgram    []byte
		want     outcome
		echoInc  uint64 // incarnation our next beat echoes
		echoTerm uint64 // term of ours the accepted beat acknowledges (if accepted)
	}{
		{"first beat, before it heard us", beat(inc1, 1, 1000, 0, 0), unverified, inc1, 0},
		{"first beat echoing another incarnation of ours", beat(inc1, 2, 1001, me+1, 5), unverified, inc1, 0},
		{"first beat echoing a beat we never sent", beat(inc1, 3, 1002, me, 21), unverified, inc1, 0},
		{"first beat echoing ours", beat(inc1, 4, 1003, me, 5), accepted, inc1, 3},
		{"same beat again", beat(inc1, 4, 1003, me, 5), replay, inc1, 0},
		{"older beat", beat(inc1, 2, 1001, me, 5), replay, inc1, 0},
		{"next beat, two lost", beat(inc1, 7, 1006, me, 8), accepted, inc1, 3},
		{"beat held back for hours", func() []byte {
			defer func(s int64) { echoSent = s }(echoSent)
			echoSent = now - int64(3*time.Hour)
			return beat(inc1, 8, 1007, me, 8)
		}(), replay, inc1, 0},
		{"recorded beat of an older incarnation", beat(inc2-200, 50, 500, me, 5), unverified, inc1, 0},
		{"restarted twin, before it heard us", beat(inc2, 1, 2000, 0, 0), unverified, inc2, 0},
		{"restarted twin echoing an old beat of ours", beat(inc2, 2, 2001, me, 8), unverified, inc2, 0},
		{"restarted twin echoing our newer beat", beat(inc2, 3, 2002, me, 9), accepted, inc2, 3},
		{"late beat of the old incarnation", beat(inc1, 9, 1008, me, 8), unverified, inc2, 0},
	}
	for _, st := range steps {
		before := h.Peer().Paths[0]
		h.receive(p, st.dgram, from)
		after := h.Peer().Paths[0]
		var got outcome
		switch {
		case after.Received == before.Received+1:
			got = accepted
		case after.Unverified == before.Unverified+1:
			got = unverified
		case after.Rejected.Replay == before.Rejected.Replay+1:
			got = replay
		default:
			t.Fatalf("%s: no counter moved: %+v", st.name, after)
		}
		if got != st.want {
			t.Errorf("%s: outcome %d, want %d", st.name, got, st.want)
		}
		if p.echoIn.Incarnation != st.echoInc {
			t.Errorf("%s: next beat echoes incarnation %d, want %d", st.name, p.echoIn.Incarnation, st.echoInc)
		}
		if got == accepted && (after.Last.Echo.Term != st.echoTerm || after.Last.Echo.Sent.IsZero()) {
			t.Errorf("%s: accepted beat's echo %+v, want term %d", st.name, after.Last.Echo, st.echoTerm)
		}
	}
	v := h.Peer()
	if v.Paths[0].Lost != 2 { // 5 and 6
		t.Errorf("lost %d, want 2", v.Paths[0].Lost)
	}
	if v.Latest.Incarnation != inc2 {
		t.Errorf("latest beat of incarnation %d, want %d", v.Latest.Incarnation, inc2)
	}
}
