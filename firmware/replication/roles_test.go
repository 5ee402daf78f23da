package replication

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// serveOn runs snd for st on a new loopback listener until stop.
func serveOn(t *testing.T, snd *Sender, st *store.Store) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = snd.Serve(ctx, st, ln) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// receiveFrom runs a receiver for st from addr until stop.
func receiveFrom(t *testing.T, node string, st *store.Store, addr string) (*Receiver, *events, func()) {
	t.Helper()
	ev := &events{}
	r, err := NewReceiver(ReceiverConfig{Node: node, Store: st, Dial: DialFirst(time.Second, addr),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, OnEvent: ev.add, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return r, ev, stop
}

func waitEqual(t *testing.T, snd *Sender, r *Receiver, active, standby *store.Store) {
	t.Helper()
	waitFor(t, "the standby in sync", func() bool { return snd.InSync() && r.InSync() && active.Seq() == standby.Seq() })
	sameContent(t, active, standby)
}

// A and B swap roles, as at a failover and rejoin, then are both active
// for a while (split brain) and rejoin again: each time the new standby
// ends up equal to the new active, by the log when it suffices, and
// nothing either of them wrote is lost.
func TestRoleSwapAndSplitBrain(t *testing.T) {
	sndA := NewSender(SenderConfig{Node: "a", HeartbeatInterval: 50 * time.Millisecond, AckTimeout: 5 * time.Second, Logger: quiet()})
	sndB := NewSender(SenderConfig{Node: "b", HeartbeatInterval: 50 * time.Millisecond, AckTimeout: 5 * time.Second, Logger: quiet()})
	a := openStore(t, t.TempDir(), store.Options{BeforeCommit: sndA.BeforeCommit})
	b := openStore(t, t.TempDir(), store.Options{BeforeCommit: sndB.BeforeCommit})

	// A active, B standby.
	addrA, stopA := serveOn(t, sndA, a)
	rB, evB, stopRB := receiveFrom(t, "b", b, addrA)
	writeMix(t, a, 0, 50)
	waitEqual(t, sndA, rB, a, b)

	// A fails; B takes over; A rejoins as standby.
	stopA()
	stopRB()
	addrB, stopB := serveOn(t, sndB, b)
	writeMix(t, b, 100, 30)
	rA, evA, stopRA := receiveFrom(t, "a", a, addrB)
	writeMix(t, b, 200, 30)
	waitEqual(t, sndB, rA, b, a)
	if n := evA.count(SnapshotStarted) + evB.count(SnapshotStarted); n != 0 {
		t.Errorf("%d snapshots where the log sufficed", n)
	}

	// Split brain: both serve on their own.
	stopB()
	stopRA()
	if err := a.SaveBinding(binding(900)); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendCDR(record(900)); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveBinding(binding(901)); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveConfig([]byte("written on b\n"), 3); err != nil {
		t.Fatal(err)
	}

	// B stays active, A rejoins: A's writes are merged into B, then A
	// gets B's store.
	addrB, _ = serveOn(t, sndB, b)
	rA, evA, _ = receiveFrom(t, "a", a, addrB)
	waitEqual(t, sndB, rA, b, a)
	waitFor(t, "a snapshot for the diverged standby", func() bool { return evA.count(SnapshotDone) > 0 })
	bs, err := b.LoadBindings()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, x := range bs {
		have[x.Contact] = true
	}
	for _, i := range []int{900, 901} {
		if !have[binding(i).Contact] {
			t.Errorf("binding %d written during the split is lost", i)
		}
	}
	rs, err := b.CDRs(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rs {
		found = found || r.ID == record(900).ID
	}
	if !found {
		t.Error("the CDR written on A during the split is lost")
	}
	if v, text, err := b.LatestConfig(); err != nil || v != 3 || string(text) != "written on b\n" {
		t.Errorf("config %d %q %v after the merge", v, text, err)
	}
}
