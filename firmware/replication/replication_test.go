package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

func TestInitialCatchUp(t *testing.T) {
	tests := []struct {
		name         string
		logKeep      int
		written      int                                              // writes on the active before the standby connects
		prepare      func(t *testing.T, active, standby *store.Store) // the standby's state before it connects
		wantSnapshot bool
		discard      bool // SenderConfig.DiscardDiverged
		wantMerged   bool // the standby's own binding(500) ends up on both
	}{
		{name: "empty standby, whole log", written: 40},
		{name: "empty standby, trimmed log", logKeep: 10, written: 40, wantSnapshot: true},
		{name: "both empty", written: 0},
		{
			name: "standby holds a prefix", written: 40,
			prepare: func(t *testing.T, active, standby *store.Store) {
				cs, err := active.ChangesSince(0, 15)
				if err != nil {
					t.Fatal(err)
				}
				if err := standby.Apply(cs); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "standby holds its own changes the log no longer reaches", logKeep: 10, written: 40,
			prepare: func(t *testing.T, active, standby *store.Store) {
				writeMix(t, standby, 0, 5)
			},
			wantSnapshot: true,
		},
		{
			name: "standby diverged", written: 40,
			prepare: func(t *testing.T, active, standby *store.Store) {
				cs, err := active.ChangesSince(0, 15)
				if err != nil {
					t.Fatal(err)
				}
				if err := standby.Apply(cs); err != nil {
					t.Fatal(err)
				}
				if err := standby.SaveBinding(binding(500)); err != nil {
					t.Fatal(err)
				}
			},
			wantSnapshot: true, wantMerged: true,
		},
		{
			name: "standby diverged, its changes discarded", written: 40, discard: true,
			prepare: func(t *testing.T, active, standby *store.Store) {
				if err := standby.SaveBinding(binding(500)); err != nil {
					t.Fatal(err)
				}
			},
			wantSnapshot: true,
		},
		{
			name: "standby ahead", written: 10,
			prepare: func(t *testing.T, active, standby *store.Store) {
				cs, err := active.ChangesSince(0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := standby.Apply(cs); err != nil {
					t.Fatal(err)
				}
				writeMix(t, standby, 100, 5)
				if err := standby.SaveBinding(binding(500)); err != nil {
					t.Fatal(err)
				}
			},
			wantSnapshot: true, wantMerged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, pairOpts{logKeep: tt.logKeep, noReceiver: true, discard: tt.discard})
			writeMix(t, p.active, 0, tt.written)
			if tt.prepare != nil {
				tt.prepare(t, p.active, p.standby)
			}
			p.startReceiver(t, nil)
			p.waitSynced(t)
			// Events are told after the state they describe changed: wait
			// for the sender's InSync event (told after its SnapshotDone)
			// and, when a snapshot is expected, for the receiver's.
			waitFor(t, "the sender's InSync event", func() bool { return p.sndEv.count(InSync) > 0 })
			if tt.wantSnapshot {
				waitFor(t, "the receiver's SnapshotDone event", func() bool { return p.rcvEv.count(SnapshotDone) > 0 })
			}
			if got := p.rcvEv.count(SnapshotDone) > 0; got != tt.wantSnapshot {
				t.Errorf("snapshot used: %v, want %v", got, tt.wantSnapshot)
			}
			if got := p.sndEv.count(SnapshotDone) > 0; got != tt.wantSnapshot {
				t.Errorf("active saw a snapshot restored: %v, want %v", got, tt.wantSnapshot)
			}
			if got := p.sndEv.count(Merged) > 0; got != tt.wantMerged {
				t.Errorf("merged: %v, want %v", got, tt.wantMerged)
			}
			b := binding(500)
			held := false
			bs, err := p.active.LoadBindings()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range bs {
				held = held || x.Contact == b.Contact
			}
			if held != tt.wantMerged {
				t.Errorf("the standby's own binding is on the active: %v, want %v", held, tt.wantMerged)
			}
			// And it keeps streaming afterwards.
			writeMix(t, p.active, 1000, 12)
			p.waitSynced(t)
		})
	}
}

func TestLiveStreaming(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.waitSynced(t)
	writeMix(t, p.active, 0, 200)
	p.waitSynced(t)
	if err := p.active.SaveConfig([]byte("node: a\n"), 7); err != nil {
		t.Fatal(err)
	}
	p.waitSynced(t)
	if n := p.rcvEv.count(SnapshotStarted); n != 0 {
		t.Errorf("%d snapshots sent to a standby that was never behind", n)
	}
}

// A write returns only once the standby committed it.
func TestSynchronousAck(t *testing.T) {
	p := newPair(t, pairOpts{ackTimeout: 5 * time.Second})
	p.waitSynced(t)
	for i := range 30 {
		b := binding(i)
		if err := p.active.SaveBinding(b); err != nil {
			t.Fatal(err)
		}
		bs, err := p.standby.LoadBindings()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, sb := range bs {
			found = found || sb.AOR == b.AOR && sb.Contact == b.Contact && sb.CSeq == b.CSeq
		}
		if !found {
			t.Fatalf("write %d: SaveBinding returned before the standby had the binding", i)
		}
		if p.standby.Seq() != p.active.Seq() {
			t.Fatalf("write %d: standby at %d, active at %d", i, p.standby.Seq(), p.active.Seq())
		}
	}
	if n := p.sndEv.count(OutOfSync); n != 0 {
		t.Errorf("%d out-of-sync events with a healthy standby", n)
	}
}

func TestNoStandbyDoesNotBlock(t *testing.T) {
	snd := NewSender(SenderConfig{Node: "a", Logger: quiet()})
	st := openStore(t, t.TempDir(), store.Options{BeforeCommit: snd.BeforeCommit})
	writeMix(t, st, 0, 10)
	if s := snd.Status(); s.Connected || s.InSync {
		t.Errorf("status with no standby: %+v", s)
	}
}

// A stalled standby does not stop writes; it is reported out of sync and
// catches up once it moves again.
func TestAckTimeout(t *testing.T) {
	p := newPair(t, pairOpts{ackTimeout: 50 * time.Millisecond})
	p.waitSynced(t)
	p.gate.stall()
	for i := range 5 {
		if err := p.active.SaveBinding(binding(i)); err != nil {
			t.Fatalf("write with a stalled standby: %v", err)
		}
	}
	if p.sndEv.count(OutOfSync) != 1 {
		t.Errorf("out-of-sync events: %d, want 1", p.sndEv.count(OutOfSync))
	}
	if n := p.snd.Status().AckTimeouts; n != 1 {
		t.Errorf("%d writes waited out the ack timeout, want 1: once it timed out, writes must not wait for a stalled standby", n)
	}
	if p.snd.InSync() {
		t.Error("sender still reports the stalled standby in sync")
	}
	writeMix(t, p.active, 10, 20)
	inSyncBefore := p.sndEv.count(InSync)
	p.gate.resume()
	p.waitSynced(t)
	// The sender reports in sync first and tells its listener just after.
	waitFor(t, "an in-sync event after the standby caught up", func() bool {
		return p.sndEv.count(InSync) > inSyncBefore
	})
	// Synchronous again: the next write is on the standby when it returns.
	if err := p.active.SaveBinding(binding(99)); err != nil {
		t.Fatal(err)
	}
	if p.standby.Seq() != p.active.Seq() {
		t.Errorf("after catching up, a write returned before the standby had it (%d vs %d)", p.standby.Seq(), p.active.Seq())
	}
}

func TestReconnect(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.waitSynced(t)
	for round := range 3 {
		p.gate.cut()
		writeMix(t, p.active, round*100, 30)
		p.waitSynced(t)
	}
	if n := p.rcvEv.count(Connected); n < 4 {
		t.Errorf("%d connections, want at least 4", n)
	}
	if n := p.rcvEv.count(SnapshotStarted); n != 0 {
		t.Errorf("%d snapshots where the log sufficed", n)
	}
}

// Only a twin with the pair's identity gets the data, both ways round.
func TestTLSIdentity(t *testing.T) {
	pair, other := newPKI(t, "pair"), newPKI(t, "someone else")
	tests := []struct {
		name     string
		wantSync bool
	}{
		{name: "same pairing identity", wantSync: true},
		{name: "standby with a foreign certificate"},
		{name: "active with a foreign certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sCfg := serverTLS(t, pair, pair, "a")
			cCfg := clientTLS(t, pair, pair, "b", "a")
			switch tt.name {
			case "standby with a foreign certificate":
				cCfg = clientTLS(t, other, pair, "b", "a")
			case "active with a foreign certificate":
				sCfg = serverTLS(t, other, pair, "a")
			}
			p := newPair(t, pairOpts{serverTLS: sCfg, noReceiver: true})
			writeMix(t, p.active, 0, 10)
			p.startReceiver(t, cCfg)
			if tt.wantSync {
				p.waitSynced(t)
				return
			}
			waitFor(t, "a refusal", func() bool { return p.rcvEv.count(Refused) > 0 && p.rcvEv.count(Disconnected) > 1 })
			if p.standby.Seq() != 0 || p.snd.Status().Connected || p.rcvEv.count(Connected) != 0 {
				t.Fatalf("a twin with a foreign identity got connected (standby seq %d)", p.standby.Seq())
			}
		})
	}
}

// A standby that was in sync goes away while the log moves past it: it
// comes back to a snapshot, then streams again.
func TestSnapshotAfterAbsence(t *testing.T) {
	p := newPair(t, pairOpts{logKeep: 20})
	writeMix(t, p.active, 0, 10)
	p.waitSynced(t)
	p.stopReceiver()
	writeMix(t, p.active, 10, 100)
	p.startReceiver(t, nil)
	p.waitSynced(t)
	waitFor(t, "a snapshot, the log being trimmed past the standby", func() bool { return p.rcvEv.count(SnapshotDone) > 0 })
}

// Writes race the standby's catch-up; it must end in sync, not stuck.
func TestCatchUpUnderLoad(t *testing.T) {
	// A long ack timeout: the writer below runs at disk speed, and a
	// standby that timed out once is left to catch up in the next pause,
	// which this writer never makes.
	p := newPair(t, pairOpts{noReceiver: true, ackTimeout: 5 * time.Second})
	writeMix(t, p.active, 0, 300)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		i := 1000
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := p.active.SaveBinding(binding(i)); err != nil {
				done <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			i++
		}
	}()
	p.startReceiver(t, nil)
	waitFor(t, "the sender to stream live", func() bool { return p.snd.InSync() })
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.waitSynced(t)
}

// The active's commit fails after the standby got the batch: the standby
// is ahead with a change the active does not hold. The next write reuses
// the number; the link resynchronises and both end up equal.
func TestActiveCommitFailsAfterSend(t *testing.T) {
	var failNext atomic.Bool
	snd := NewSender(SenderConfig{Node: "a", AckTimeout: 5 * time.Second, HeartbeatInterval: 50 * time.Millisecond, Logger: quiet()})
	p := newPair(t, pairOpts{noReceiver: true})
	// A second active store in front of the same sender, whose commits
	// can be made to fail after the sender had the batch.
	active := openStore(t, t.TempDir(), store.Options{BeforeCommit: func(cs []store.Change) error {
		if err := snd.BeforeCommit(cs); err != nil {
			return err
		}
		if failNext.Swap(false) {
			return errors.New("simulated disk error")
		}
		return nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = snd.Serve(ctx, active, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	p.active, p.snd, p.addr = active, snd, ln.Addr().String()
	p.startReceiver(t, nil)
	writeMix(t, active, 0, 10)
	p.waitSynced(t)

	failNext.Store(true)
	lost := binding(700)
	if err := active.SaveBinding(lost); err == nil {
		t.Fatal("the simulated commit failure did not fail the write")
	}
	if p.standby.Seq() != active.Seq()+1 {
		t.Fatalf("standby at %d, active at %d: want the standby one ahead", p.standby.Seq(), active.Seq())
	}
	if err := active.SaveBinding(binding(701)); err != nil {
		t.Fatal(err)
	}
	writeMix(t, active, 20, 5)
	waitFor(t, "the standby in sync again", func() bool {
		return snd.InSync() && p.rcv.InSync() && p.standby.Seq() == active.Seq()
	})
	sameContent(t, active, p.standby)
	// The write the active failed reached the standby, and comes back by
	// the merge (docs/CLUSTER.md "Merge rules").
	bs, err := active.LoadBindings()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range bs {
		found = found || b.Contact == lost.Contact
	}
	if !found {
		t.Error("the binding the standby held alone was not merged back")
	}
}
