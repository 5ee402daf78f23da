package dispatch

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ranking is the order the hash algorithms try the backends in for key.
func ranking(d *Dispatcher, key string) []int {
	r := d.roster.Load()
	idx := make([]int, len(r.names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		return cmp.Compare(score(key, r.names[b], r.weights[b]), score(key, r.names[a], r.weights[a]))
	})
	return idx
}

// inviteOrder is the order in which the backends got the INVITE of callID.
func inviteOrder(bs []*fakeBackend, callID string) []int {
	type got struct {
		at time.Time
		i  int
	}
	var gs []got
	for i, b := range bs {
		b.mu.Lock()
		for k, r := range b.got {
			if r.IsInvite() && r.CallID().Value() == callID {
				gs = append(gs, got{b.at[k], i})
				break
			}
		}
		b.mu.Unlock()
	}
	slices.SortFunc(gs, func(a, b got) int { return a.at.Compare(b.at) })
	out := make([]int, len(gs))
	for k, g := range gs {
		out[k] = g.i
	}
	return out
}

func topBranch(r sip.Message) string {
	switch m := r.(type) {
	case *sip.Request:
		return m.Via().Params.GetOr("branch", "")
	case *sip.Response:
		return m.Via().Params.GetOr("branch", "")
	}
	return ""
}

// silentTimeout is the tx_timeout of the tests where a backend does not
// answer: the live ones must answer within it, also on a loaded machine.
const silentTimeout = 2 * time.Second

// TestFailover: a new call refused with 500 or 503, or left unanswered,
// goes on to the next backend in the hash's ranking, up to Attempts; the
// phone sees one final answer; errors the phone does not see are ACKed by
// the dispatcher; the callee's own answers (486, 408) and anything after a
// 180 reach the phone unchanged.
func TestFailover(t *testing.T) {
	type be struct {
		status int  // final answer to INVITE; 0: 200
		ring   bool // 180 first
		silent bool
	}
	tests := []struct {
		name     string
		byRank   [3]be // the backends in the ranking of the call's key
		attempts int
		want     int // the phone's final answer
		tried    int // backends that got the INVITE, in ranking order
	}{
		{"503 then 200", [3]be{{status: 503}, {}, {}}, 0, 200, 2},
		{"500 then 200", [3]be{{status: 500}, {}, {}}, 0, 200, 2},
		{"two 503", [3]be{{status: 503}, {status: 503}, {}}, 0, 200, 3},
		{"all 503: the last one's to the phone", [3]be{{status: 503}, {status: 503}, {status: 503}}, 0, 503, 3},
		{"attempts limit", [3]be{{status: 503}, {status: 503}, {}}, 2, 503, 2},
		{"no retry with 1 attempt", [3]be{{status: 503}, {}, {}}, 1, 503, 1},
		{"486 is the callee's", [3]be{{status: 486}, {}, {}}, 0, 486, 1},
		{"408 is the callee's", [3]be{{status: 408}, {}, {}}, 0, 408, 1},
		{"603 is the callee's", [3]be{{status: 603}, {}, {}}, 0, 603, 1},
		{"503 after 180", [3]be{{status: 503, ring: true}, {}, {}}, 0, 503, 1},
		{"silent then 200", [3]be{{silent: true}, {}, {}}, 0, 200, 2},
		{"silent then 503 then 200", [3]be{{silent: true}, {status: 503}, {}}, 0, 200, 3},
		{"all silent: 503 from the dispatcher", [3]be{{silent: true}, {silent: true}, {silent: true}}, 0, 503, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bs := threeBackends(t)
			// Long enough that a live backend on a loaded machine is
			// not given up on; short enough for the test.
			timeout := 20 * time.Second
			if tc.byRank[0].silent {
				timeout = silentTimeout
			}
			disp, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour, TxTimeout: timeout, Attempts: tc.attempts}, bs...)
			id := "fo-" + tc.name
			rank := ranking(disp, id)
			for k, b := range tc.byRank {
				fb := bs[rank[k]]
				fb.finalStatus.Store(int32(b.status))
				fb.ringOnly.Store(b.ring)
				fb.dropInvites.Store(b.silent)
			}
			p := newPhone(t)
			c := &call{id: id}
			p.send(d, p.request(d, c, sip.INVITE, "inv"))
			res := p.until(id, tc.want)
			for _, r := range res[:len(res)-1] {
				if r.StatusCode >= 200 {
					t.Errorf("the phone got %d before its final %d", r.StatusCode, tc.want)
				}
			}
			final := res[len(res)-1]
			if got := inviteOrder(bs, id); !slices.Equal(got, rank[:tc.tried]) {
				t.Errorf("INVITE reached backends %v, want %v (the ranking)", got, rank[:tc.tried])
			}
			last := bs[rank[tc.tried-1]]
			if final.StatusCode == 200 {
				rr := final.RecordRoute()
				if rr == nil || rr.Address.UriParams.GetOr(routeParam, "") != backendTag(last.addr.String()) {
					t.Errorf("Record-Route %v does not name the backend that took the call (%s)", rr, last.addr)
				}
			}
			// The errors absorbed were ACKed by the dispatcher, on
			// the branch of the INVITE they answered.
			for k := range tc.tried - 1 {
				if b := tc.byRank[k]; b.silent {
					continue
				}
				fb := bs[rank[k]]
				waitFor(t, "the dispatcher's ACK of the error", func() bool { return fb.last(sip.ACK, id) != nil })
				if a, inv := fb.last(sip.ACK, id), fb.last(sip.INVITE, id); topBranch(a) != topBranch(inv) {
					t.Errorf("ACK branch %s, INVITE branch %s", topBranch(a), topBranch(inv))
				}
			}
			// The phone's ACK of an error goes to the backend whose
			// error it was; of the dispatcher's own 503 nowhere.
			if final.StatusCode >= 300 {
				p.send(d, p.request(d, c, sip.ACK, "inv", "X-Test: ack"))
				if tc.byRank[tc.tried-1].silent {
					// A retransmitted INVITE gets the same answer.
					p.send(d, p.request(d, c, sip.INVITE, "inv"))
					c.seq--
					if again := p.final(id, sip.INVITE); again.StatusCode != 503 {
						t.Errorf("retransmission answered %d, want 503 again", again.StatusCode)
					}
					for i, b := range bs {
						if b.last(sip.ACK, id) != nil {
							t.Errorf("backend %d got an ACK of the dispatcher's own 503", i)
						}
					}
				} else {
					waitFor(t, "the phone's ACK at the last backend", func() bool {
						a := last.last(sip.ACK, id)
						return a != nil && a.GetHeader("X-Test") != nil
					})
					if a, inv := last.last(sip.ACK, id), last.last(sip.INVITE, id); topBranch(a) != topBranch(inv) {
						t.Errorf("the phone's ACK has branch %s, the INVITE %s", topBranch(a), topBranch(inv))
					}
				}
			}
			if tc.byRank[0].silent && disp.Status().Backends[rank[0]].Up {
				t.Errorf("the silent backend is still up")
			}
		})
	}
}

// TestCancelDuringFailover: a CANCEL from the phone after the call moved
// on reaches the backend that has the call now, on its branch; a CANCEL
// while the first backend still has it stops the failover, and the phone
// gets 487 when that backend never answers.
func TestCancelDuringFailover(t *testing.T) {
	t.Run("after the move", func(t *testing.T) {
		t.Parallel()
		bs := threeBackends(t)
		disp, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour, TxTimeout: silentTimeout}, bs...)
		id := "cancel-moved"
		rank := ranking(disp, id)
		bs[rank[0]].dropInvites.Store(true)
		bs[rank[1]].ringOnly.Store(true)
		p := newPhone(t)
		c := &call{id: id}
		p.send(d, p.request(d, c, sip.INVITE, "inv"))
		p.response(id, 180)
		p.send(d, p.request(d, c, sip.CANCEL, "inv"))
		if res := p.final(id, sip.CANCEL); res.StatusCode != 200 {
			t.Fatalf("CANCEL: %d", res.StatusCode)
		}
		now := bs[rank[1]]
		cn := now.last(sip.CANCEL, id)
		if cn == nil {
			t.Fatalf("the CANCEL did not reach the backend that has the call")
		}
		if topBranch(cn) != topBranch(now.last(sip.INVITE, id)) {
			t.Errorf("CANCEL branch %s, INVITE branch %s", topBranch(cn), topBranch(now.last(sip.INVITE, id)))
		}
		if bs[rank[0]].last(sip.CANCEL, id) != nil {
			t.Errorf("the CANCEL went to the backend given up on")
		}
	})
	t.Run("before the move", func(t *testing.T) {
		t.Parallel()
		bs := threeBackends(t)
		disp, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour, TxTimeout: silentTimeout}, bs...)
		id := "cancel-early"
		rank := ranking(disp, id)
		bs[rank[0]].silent.Store(true)
		p := newPhone(t)
		c := &call{id: id}
		p.send(d, p.request(d, c, sip.INVITE, "inv"))
		p.response(id, 100)
		p.send(d, p.request(d, c, sip.CANCEL, "inv"))
		if res := p.final(id, sip.INVITE); res.StatusCode != 487 {
			t.Fatalf("INVITE answered %d, want 487", res.StatusCode)
		}
		if bs[rank[0]].last(sip.CANCEL, id) == nil {
			t.Errorf("the CANCEL did not reach the backend that had the call")
		}
		for _, k := range rank[1:] {
			if bs[k].last(sip.INVITE, id) != nil {
				t.Errorf("a cancelled call went on to backend %d", k)
			}
		}
	})
}

// TestLateAnswerOfBackendGivenUp: a backend that answers after the call
// moved on has its error ACKed by the dispatcher and its provisional
// answers dropped; the phone sees neither.
func TestLateAnswerOfBackendGivenUp(t *testing.T) {
	t.Parallel()
	bs := threeBackends(t)
	disp, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour, TxTimeout: silentTimeout}, bs...)
	id := "late"
	rank := ranking(disp, id)
	old := bs[rank[0]]
	old.dropInvites.Store(true)
	bs[rank[1]].ringOnly.Store(true)
	p := newPhone(t)
	c := &call{id: id}
	p.send(d, p.request(d, c, sip.INVITE, "inv"))
	p.response(id, 180)
	inv := old.last(sip.INVITE, id)
	for _, code := range []int{180, 503} {
		res := sip.NewResponseFromRequest(inv, code, "Late", nil)
		res.To().Params.Add("tag", "old")
		if err := old.sendTo(d, res.String()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the dispatcher's ACK of the late 503", func() bool { return old.last(sip.ACK, id) != nil })
	for _, r := range p.drain(200 * time.Millisecond) {
		if tag := r.To().Params.GetOr("tag", ""); tag == "old" {
			t.Errorf("the phone got the late %d of the backend given up on", r.StatusCode)
		}
	}
}

func TestSplitBranch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		base string
		n    int
	}{
		{"z9hG4bK-d-abc", "z9hG4bK-d-abc", 0},
		{"z9hG4bK-d-abc.2", "z9hG4bK-d-abc", 2},
		{"z9hG4bK-d-abc.0", "z9hG4bK-d-abc.0", 0},
		{"z9hG4bK-d-abc.x", "z9hG4bK-d-abc.x", 0},
		{"z9hG4bK-d-abc.-1", "z9hG4bK-d-abc.-1", 0},
		{".", ".", 0},
	} {
		base, n := splitBranch(tc.in)
		if base != tc.base || n != tc.n {
			t.Errorf("splitBranch(%q) = %q %d, want %q %d", tc.in, base, n, tc.base, tc.n)
		}
		if n > 0 && attemptBranch(base, n) != tc.in {
			t.Errorf("attemptBranch does not undo splitBranch for %q", tc.in)
		}
	}
}

// TestInviteRepeated: the dispatcher, having answered 100 itself, repeats
// an INVITE its backend has not answered (RFC 3261 Timer A), so a lost
// INVITE costs a moment, not a failover and a backend marked down.
func TestInviteRepeated(t *testing.T) {
	t.Parallel()
	bs := threeBackends(t)
	disp, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour, TxTimeout: 20 * time.Second}, bs...)
	id := "lost-once"
	rank := ranking(disp, id)
	bs[rank[0]].loseInvites.Store(2)
	p := newPhone(t)
	c := &call{id: id}
	p.send(d, p.request(d, c, sip.INVITE, "inv"))
	if res := p.final(id, sip.INVITE); res.StatusCode != 200 {
		t.Fatalf("INVITE: %d", res.StatusCode)
	}
	if got := inviteOrder(bs, id); !slices.Equal(got, rank[:1]) {
		t.Errorf("INVITE reached backends %v, want only %d", got, rank[0])
	}
	if st := disp.Status().Backends[rank[0]]; !st.Up || st.Sent != 1 {
		t.Errorf("backend after two lost INVITEs: %+v, want up, one call counted", st)
	}
}
