package nstest

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/internal/testphone"
)

// maxAudioGap is a generous bound on the audio gap a failover may cause in
// a test; the target (< 1 s, aiming at the takeover's 0.5 s) is for the
// benchmark, which runs the trials of TestCallAudioTrials.
const maxAudioGap = 3 * time.Second

// audioTrials is how many failovers TestCallAudioTrials measures; 0 skips
// it (it is a benchmark, run by bench/failover/run.sh).
var audioTrials = flag.Int("audio.trials", 0, "failovers TestCallAudioTrials measures (0: skip it)")

// audioGap is what one direction of a call heard around a failover.
type audioGap struct {
	// Longest is the longest time between two packets that arrived
	// within the window (counting its end when the stream stopped).
	Longest time.Duration
	// At is when the longest gap began.
	At time.Time
	// Lost counts sequence numbers missing within the window.
	Lost int
	// Packets is how many packets arrived within the window.
	Packets int
}

func (g audioGap) String() string {
	return fmt.Sprintf("longest gap %v, %d packets, %d lost", g.Longest.Round(time.Millisecond), g.Packets, g.Lost)
}

// measureGap finds the longest silence in arrivals between from and to:
// from the last packet before from (or from itself) through every
// packet within, to to. Arrivals are in the order they came; sequence
// numbers missing after the last packet before the window (or after the
// window's first packet) up to the highest one received count as lost,
// so a packet that comes late is not.
func measureGap(arrivals []testphone.Arrival, from, to time.Time) audioGap {
	var g audioGap
	prev := from
	var last uint16 // highest sequence number so far, as sent
	high, base := 0, 0
	haveSeq := false
	for _, a := range arrivals {
		if a.At.After(to) {
			break
		}
		if haveSeq {
			if d := int(int16(a.Seq - last)); d > 0 {
				high += d
				last = a.Seq
			}
		} else {
			last, haveSeq = a.Seq, true
			if !a.At.Before(from) {
				base = -1 // the window's first packet counts itself
			}
		}
		if a.At.Before(from) {
			prev, base = a.At, high
			continue
		}
		if d := a.At.Sub(prev); d > g.Longest {
			g.Longest, g.At = d, prev
		}
		prev = a.At
		g.Packets++
	}
	if d := to.Sub(prev); d > g.Longest {
		g.Longest, g.At = d, prev
	}
	if g.Packets > 0 {
		g.Lost = max(0, high-base-g.Packets)
	}
	return g
}

func TestMeasureGap(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	steady := func(from, to, seq int) []testphone.Arrival {
		var s []testphone.Arrival
		for at := from; at < to; at += 20 {
			s = append(s, testphone.Arrival{At: ms(at), Seq: uint16(seq)})
			seq++
		}
		return s
	}
	tests := []struct {
		name        string
		arrivals    []testphone.Arrival
		from, to    int
		wantLongest time.Duration
		wantLost    int
		wantPackets int
	}{
		{"steady stream", steady(0, 2000, 1), 500, 1500, 20 * time.Millisecond, 0, 51},
		{"a 400 ms hole", append(steady(0, 1000, 1), steady(1400, 2000, 71)...), 500, 1900, 420 * time.Millisecond, 20, 51},
		{"loss right at the window's start", append(steady(0, 500, 1), steady(600, 700, 31)...), 500, 700, 120 * time.Millisecond, 5, 5},
		{"nothing after the window's start", steady(0, 1000, 1), 500, 3000, 2020 * time.Millisecond, 0, 25},
		{"nothing at all", nil, 0, 1000, time.Second, 0, 0},
		{"sequence wraps", steady(0, 200, 65530), 0, 200, 20 * time.Millisecond, 0, 10},
		{"a late packet is not lost", []testphone.Arrival{{At: ms(0), Seq: 10}, {At: ms(20), Seq: 12}, {At: ms(25), Seq: 11}, {At: ms(40), Seq: 13}}, 0, 40, 20 * time.Millisecond, 0, 4},
		{"a lost packet is", []testphone.Arrival{{At: ms(0), Seq: 10}, {At: ms(20), Seq: 12}, {At: ms(40), Seq: 13}}, 0, 40, 20 * time.Millisecond, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := measureGap(tt.arrivals, ms(tt.from), ms(tt.to))
			if g.Longest != tt.wantLongest || g.Lost != tt.wantLost || g.Packets != tt.wantPackets {
				t.Errorf("measureGap = %s (%v), want longest %v, %d lost, %d packets", g, g.Longest, tt.wantLongest, tt.wantLost, tt.wantPackets)
			}
		})
	}
}

// callFailover is one way to break the active under a call, and which
// phone hangs up after the takeover.
type callFailover struct {
	name    string
	breakIt func(t *testing.T, p *pair, active testbed.Node)
	hangUp  int // the phone (0 caller, 1 callee) that sends the BYE
}

var callFailovers = []callFailover{
	{"active SIGKILL, caller hangs up", func(t *testing.T, p *pair, a testbed.Node) {
		// The node process crashes; its supervisor lives on.
		pid, err := p.worker(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}, 0},
	{"active power off, callee hangs up", func(t *testing.T, p *pair, a testbed.Node) {
		if err := p.bed.PowerOff(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}, 1},
}

// TestCallAudioSurvivesFailover makes an answered call between two Go
// phones through the active box with RTP both ways, breaks the active,
// and checks that audio resumes in both directions through the new
// active, that a BYE from either phone is answered 200 and reaches the
// other phone, and that the call's CDR on the new active carries the
// original start and answer times.
func TestCallAudioSurvivesFailover(t *testing.T) {
	// Every row of the decision table that takes over, not only the two
	// written for calls.
	cases := slices.Clone(callFailovers)
	for _, b := range breakCases {
		covered := slices.ContainsFunc(callFailovers, func(c callFailover) bool { return strings.HasPrefix(c.name, b.name+",") })
		if b.takeover && !covered {
			cases = append(cases, callFailover{b.name + ", caller hangs up", b.breakIt, 0})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCallFailover(t, c)
			t.Logf("%s: caller heard %s; callee heard %s", c.name, r.toCaller, r.toCallee)
			for dir, g := range map[string]audioGap{"to the caller": r.toCaller, "to the callee": r.toCallee} {
				if g.Longest > maxAudioGap {
					t.Errorf("audio %s: %s, want a gap under %v", dir, g, maxAudioGap)
				}
			}
		})
	}
}

// TestCallAudioTrials is a benchmark: it runs -audio.trials SIGKILL
// failovers under a call and prints each direction's longest audio gap,
// for docs/BENCHMARKS.md.
func TestCallAudioTrials(t *testing.T) {
	if *audioTrials == 0 {
		t.Skip("a benchmark: run it with -audio.trials N (bench/failover/run.sh does)")
	}
	var gaps []time.Duration
	for i := range *audioTrials {
		t.Run(fmt.Sprint("trial ", i+1), func(t *testing.T) {
			r := runCallFailover(t, callFailovers[0])
			g := max(r.toCaller.Longest, r.toCallee.Longest)
			gaps = append(gaps, g)
			fmt.Printf("AUDIO-TRIAL %d caller %d ms callee %d ms lost %d/%d\n", i+1,
				r.toCaller.Longest.Milliseconds(), r.toCallee.Longest.Milliseconds(), r.toCaller.Lost, r.toCallee.Lost)
		})
	}
	slices.Sort(gaps)
	if len(gaps) > 0 {
		fmt.Printf("AUDIO-SUMMARY trials %d median %d ms min %d ms max %d ms\n", len(gaps),
			gaps[len(gaps)/2].Milliseconds(), gaps[0].Milliseconds(), gaps[len(gaps)-1].Milliseconds())
	}
}

// callResult is what the phones heard around one failover.
type callResult struct {
	toCaller, toCallee audioGap
}

// runCallFailover runs one call through a failover and checks the call's
// signalling and CDR; it returns the audio gaps for the caller to judge.
func runCallFailover(t *testing.T, c callFailover) callResult {
	// Bounds the phones' transactions; the test's own waits are below.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPair(t, 2)
	active, standby := p.waitSettled(20 * time.Second)
	caller := testphone.New(t, p.bed, testbed.Phone(0), alice, testphone.Options{})
	callee := testphone.New(t, p.bed, testbed.Phone(1), bob, testphone.Options{})
	if err := callee.Register(ctx); err != nil {
		t.Fatal(err)
	}
	placed := time.Now()
	callerMedia, err := caller.Call(ctx, bob.Number)
	if err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	var calleeMedia netip.AddrPort
	select {
	case calleeMedia = <-callee.Answered():
	case <-ctx.Done():
		t.Fatal("the callee never got the INVITE")
	}
	caller.Media.Send(callerMedia)
	callee.Media.Send(calleeMedia)
	waitFor(t, 15*time.Second, "audio both ways through the active", func() (bool, string) {
		a, b := caller.Media.ReceivedSince(answered), callee.Media.ReceivedSince(answered)
		return a > 10 && b > 10, fmt.Sprintf("caller got %d packets, callee %d", a, b)
	})
	// The answered call is saved and replicated before the fault.
	waitFor(t, 20*time.Second, "the standby in sync with the active", func() (bool, string) {
		sa, err := p.status(active)
		if err != nil {
			return false, err.Error()
		}
		ss, err := p.status(standby)
		if err != nil {
			return false, err.Error()
		}
		return ss.Cluster.Replication.InSync && ss.Cluster.Replication.Seq >= sa.Cluster.Replication.Seq,
			fmt.Sprintf("active seq %d, standby seq %d in sync %v", sa.Cluster.Replication.Seq, ss.Cluster.Replication.Seq, ss.Cluster.Replication.InSync)
	})

	broken := time.Now()
	c.breakIt(t, p, active)
	p.waitTakeover(standby, 20*time.Second)
	// Audio must come back both ways and keep flowing for a second.
	var resumed time.Time
	waitFor(t, 20*time.Second, "audio both ways through the new active", func() (bool, string) {
		a, b := caller.Media.ReceivedSince(broken), callee.Media.ReceivedSince(broken)
		if resumed.IsZero() && a > 0 && b > 0 {
			resumed = time.Now()
		}
		return !resumed.IsZero() && time.Since(resumed) > time.Second, fmt.Sprintf("since the fault the caller got %d packets, the callee %d", a, b)
	})
	end := time.Now()
	var r callResult
	r.toCaller = measureGap(caller.Media.Received(), broken, end)
	r.toCallee = measureGap(callee.Media.Received(), broken, end)
	caller.Media.StopSending()
	callee.Media.StopSending()

	// A BYE from one phone is answered by the new active and reaches the
	// other phone.
	phones := []*testphone.Phone{caller, callee}
	by, other := phones[c.hangUp], phones[1-c.hangUp]
	code, err := by.HangUp(ctx)
	if err != nil {
		t.Fatalf("phone %s hanging up after the failover: %v", by.Node(), err)
	}
	if code != sip.StatusOK {
		t.Fatalf("phone %s's BYE after the failover: %d, want 200", by.Node(), code)
	}
	select {
	case <-other.Byes():
	case <-time.After(20 * time.Second):
		t.Fatalf("phone %s never got the BYE from phone %s", other.Node(), by.Node())
	}

	// The CDR on the new active keeps the times of the call's start and
	// answer, which only the old active saw.
	var rec map[string]string
	waitFor(t, 20*time.Second, "the call's CDR on the new active", func() (bool, string) {
		out, err := p.exec("cdr", "export", "--data", p.boxes[standby].dir)
		if err != nil {
			return false, fmt.Sprintf("%v: %s", err, out)
		}
		recs, err := readCDRs(out)
		if err != nil {
			return false, err.Error()
		}
		for _, x := range recs {
			if x["caller"] == alice.Number && x["callee"] == bob.Number {
				rec = x
				return true, ""
			}
		}
		return false, out
	})
	start, err1 := time.Parse(time.RFC3339Nano, rec["start"])
	answer, err2 := time.Parse(time.RFC3339Nano, rec["answer"])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("CDR times: %v: %v", err, rec)
	}
	// A little slack for the clocks of two processes read at different moments.
	const slack = 50 * time.Millisecond
	if start.Before(placed.Add(-slack)) || start.After(answered) {
		t.Errorf("CDR start %v, want between the INVITE (%v) and the answer (%v)", start, placed, answered)
	}
	if answer.Before(start) || answer.After(answered.Add(slack)) {
		t.Errorf("CDR answer %v, want between its start %v and the answer the caller saw (%v)", answer, start, answered)
	}
	if rec["disposition"] != "ANSWERED" {
		t.Errorf("CDR disposition %q, want ANSWERED: %v", rec["disposition"], rec)
	}
	wantBy := map[int]string{0: "caller", 1: "callee"}[c.hangUp]
	if rec["hangup_by"] != wantBy {
		t.Errorf("CDR hung up by %q, want %q: %v", rec["hangup_by"], wantBy, rec)
	}
	return r
}

// readCDRs reads a CSV export into one map per record, keyed by column.
func readCDRs(text string) ([]map[string]string, error) {
	rows, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading the CDR export: %w", err)
	}
	if len(rows) == 0 {
		return nil, errors.New("reading the CDR export: no header")
	}
	var recs []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, col := range rows[0] {
			if i < len(row) {
				m[col] = row[i]
			}
		}
		recs = append(recs, m)
	}
	return recs, nil
}
