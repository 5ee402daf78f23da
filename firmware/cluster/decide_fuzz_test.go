package cluster

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecide feeds the decisions arbitrary states and inputs (as a twin
// with a bug or a forged beat might) and checks what must hold whatever
// they are.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{3, 1, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{3, 5, 0xff, 3, 9, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18})
	// The active's line fails past its threshold; its healthy standby twin
	// left for the line (shared fault): no hand-back.
	f.Add([]byte{0, 100, 3, 2, 2, 0, 0, 1, 0, 0, 0, 0, 2, 1, 0, 0, 1, 1, 0, 0, 0, 0xff, 0xf6, 2,
		1, 1, 0, 0, 0, 0, 0, 10, 1, 1, 1, 0, 1, 0, 0, 1, 1, 5})
	// The same active latched an hour ago, its twin's shared fault gone:
	// it retries the twin's side.
	f.Add([]byte{0, 100, 3, 2, 2, 0, 0, 1, 0, 0, 0, 0, 2, 1, 0, 0, 1, 1, 0, 0, 0, 0xff, 0xf6, 2,
		1, 1, 0, 0, 0, 0, 0, 10, 1, 1, 1, 0, 0, 1, 0x0e, 0x10, 0, 1, 1, 5})
	d := &decider{cfg: testConfig("a", "b"), monitors: map[string]monitorSpec{"pbx": {Restartable: true}, "nic": {},
		"pstn": {Restartable: true, ActiveOnly: true, HoldDown: pstnHoldDown}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := reader(data)
		now := t0.Add(time.Duration(r.u16()) * time.Millisecond)
		s := state{
			Role: Role(r.u8() % 6), Term: uint64(r.u8()), SeenTerm: uint64(r.u8()),
			BootStart:   t0.Add(time.Duration(r.u16()) * time.Millisecond),
			LeaseExpiry: t0.Add(time.Duration(r.u16()) * time.Millisecond),
			Handover:    r.bit(), Following: r.bit(),
			HandoverAt: t0.Add(-time.Duration(r.u8()) * 10 * time.Millisecond),
		}
		b := Beat{Node: "b", Role: Role(r.u8() % 7), Term: uint64(r.u8()), StoreSeq: uint64(r.u8()), ConfigVersion: uint64(r.u8()),
			GatewayOK: r.bit(), Healthy: r.bit(), Goodbye: r.bit(), Handover: r.bit(), Maintenance: r.bit(),
			Echo: Echo{Sent: now.Add(time.Duration(int16(r.u16())) * time.Millisecond), Term: uint64(r.u8())}}
		in := inputs{Now: now, GatewayOK: r.bit(), InSync: r.bit(), StoreSeq: uint64(r.u8()), ConfigVersion: uint64(r.u8()),
			Maintenance: r.bit(), Switchover: r.bit()}
		heardAgo := time.Duration(r.u16()) * time.Millisecond
		if r.bit() {
			in.Peer = PeerView{Last: b, Heard: now.Add(-heardAgo)}
			in.Peer.Paths[Crossover].Up = r.bit()
			in.Peer.Paths[LAN].Up = r.bit()
		}
		if r.bit() {
			in.Monitors = map[string]error{"pbx": nil, "nic": nil}
			if r.bit() {
				in.Monitors["pbx"] = errors.New("down")
			}
			if r.bit() {
				in.Monitors["nic"] = errors.New("down")
			}
		}
		// The PSTN line: the twin's shared fault, this box's memory of it.
		in.Peer.Last.SharedFault = r.bit()
		if r.bit() && s.Role == Active { // only an active box gets stuck
			s.Stuck = map[string]time.Time{"pstn": now.Add(-time.Duration(r.u16()) * time.Second)}
		}
		if r.bit() {
			s.LeftFor = map[string]time.Time{"pstn": now.Add(-time.Duration(r.u16()) * time.Second)}
		}
		if r.bit() {
			if in.Monitors == nil {
				in.Monitors = map[string]error{}
			}
			in.Monitors["pstn"] = nil
			if r.bit() {
				in.Monitors["pstn"] = errors.New("down")
			}
			fails := int(r.u8() % 8)
			for i := range fails {
				if s.Fails == nil {
					s.Fails = map[string][]time.Time{}
				}
				s.Fails["pstn"] = append(s.Fails["pstn"], now.Add(-time.Duration(i)*time.Second))
			}
		}
		res := d.decide(s, in)
		if res.Probe {
			if res.Next.Role != s.Role || len(res.Actions) != 0 {
				t.Fatalf("a probe request changes the state")
			}
			in.VIP = probeResult(1 + r.u8()%2)
			in.ProbeEnd = now.Add(time.Duration(r.u8()) * time.Millisecond)
			res = d.decide(s, in)
			if res.Probe {
				t.Fatal("probe asked for twice")
			}
		}
		next := res.Next
		acts := make([]string, len(res.Actions))
		for i, a := range res.Actions {
			acts[i] = a.String()
		}
		// The decision is taken once the probe has ended: a lease counts
		// from then at the latest.
		decided := now
		if in.VIP != probeNotRun && in.ProbeEnd.After(now) {
			decided = in.ProbeEnd
		}
		renewed := next.Role == Active && !next.LeaseExpiry.Equal(s.LeaseExpiry)
		if renewed && next.LeaseExpiry.After(decided.Add(d.cfg.Lease)) {
			t.Fatalf("lease renewed to %v past the decision, more than the lease %v", next.LeaseExpiry.Sub(decided), d.cfg.Lease)
		}
		if renewed && next.LeaseByGateway && next.LeaseExpiry.After(decided.Add(d.cfg.ProbeSpan)) {
			t.Fatalf("gateway lease renewed to %v past the decision, more than the probe span %v", next.LeaseExpiry.Sub(decided), d.cfg.ProbeSpan)
		}
		if next.Role != Active && next.leaseValid(now) {
			t.Fatalf("%v with a valid lease", next.Role)
		}
		if s.Role == Fenced && (next.Role != Fenced || len(acts) > 0) {
			t.Fatalf("FENCED moved to %v with %q", next.Role, acts)
		}
		if s.Role != Active && next.Role == Active {
			if in.Maintenance {
				t.Fatal("took over in maintenance")
			}
			heardActive := !in.Peer.Silent() && !in.Peer.Heard.IsZero() && b.Role == Active
			if heardActive {
				t.Fatal("took over from a twin heard active")
			}
			if next.Term <= max(s.Term, s.SeenTerm) {
				t.Fatalf("took over with term %d, not above %d and %d", next.Term, s.Term, s.SeenTerm)
			}
			i := slices.Index(acts, "term "+itoa(next.Term))
			if i < 0 || !slices.Equal(acts[i:], takeoverActs(itoa(next.Term))) {
				t.Fatalf("takeover actions %q", acts)
			}
		}
		if s.Role == Active && next.Role != Active {
			if len(acts) < 2 || acts[0] != "stop" || acts[1] != "release vip" {
				t.Fatalf("left ACTIVE with %q, not in stop order", acts)
			}
			twinFault := !in.Peer.Silent() && !in.Peer.Heard.IsZero() && in.Peer.Last.SharedFault
			latched, stuck := s.Stuck["pstn"]
			if strings.Contains(next.Reason, "monitor pstn") && twinFault {
				t.Fatalf("handed the line back (%s) to a twin whose line failed within its hold-down", next.Reason)
			}
			// A latched box moves the line once its latch is a hold-down
			// old, as a retry (counted), never sooner.
			if strings.Contains(next.Reason, "monitor pstn") && stuck {
				if now.Sub(latched) < pstnHoldDown || next.Retries["pstn"] != s.Retries["pstn"]+1 {
					t.Fatalf("a box latched %v ago moved the line (%s), retries %d", now.Sub(latched), next.Reason, next.Retries["pstn"])
				}
			} else if next.Retries["pstn"] != s.Retries["pstn"] {
				t.Fatalf("retry counted for %s", next.Reason)
			}
			if len(next.Stuck) > 0 {
				t.Fatalf("left ACTIVE still stuck: %v", next.Stuck)
			}
		}
		if next.Role != Active && len(next.Stuck) > 0 {
			t.Fatalf("%v stuck with %v", next.Role, next.Stuck)
		}
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// reader hands out fuzz bytes; past the end it gives zeros.
type byteReader struct{ b []byte }

func reader(b []byte) *byteReader { return &byteReader{b: b} }

func (r *byteReader) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *byteReader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }

func (r *byteReader) bit() bool { return r.u8()&1 == 1 }
