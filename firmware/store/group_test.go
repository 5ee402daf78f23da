package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// gate is a BeforeCommit that holds the first commit until released, so a
// test can queue writers behind it and know they form the next batch. It
// records every batch it is given.
type gate struct {
	release chan struct{}
	mu      sync.Mutex
	batches [][]Change
	fail    error // returned for every batch after the first
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) beforeCommit(cs []Change) error {
	g.mu.Lock()
	first := len(g.batches) == 0
	g.batches = append(g.batches, append([]Change(nil), cs...))
	g.mu.Unlock()
	if first {
		<-g.release
		return nil
	}
	return g.fail
}

func (g *gate) seen() [][]Change {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.batches
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, what, cond)
}

func queued(s *Store) int {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return len(s.group.queue)
}

// startBatch makes s commit one write held at the gate, queues the given
// writes behind it and returns a function that releases the gate and
// returns the queued writes' errors in order. The writes queue one at a
// time, so their order in the batch is known.
func startBatch(t *testing.T, s *Store, g *gate, writes []func(*Tx) error) func() []error {
	t.Helper()
	firstDone := make(chan error, 1)
	go func() { firstDone <- s.PutDialog("held", []byte("x")) }()
	waitFor(t, "the first commit to reach BeforeCommit", func() bool { return len(g.seen()) == 1 })
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, fn := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.groupUpdate(fn)
		}()
		waitFor(t, fmt.Sprintf("write %d to queue", i), func() bool { return queued(s) == i+1 })
	}
	return func() []error {
		close(g.release)
		if err := <-firstDone; err != nil {
			t.Errorf("held write: %v", err)
		}
		wg.Wait()
		return errs
	}
}

func put(key string) func(*Tx) error {
	return func(t *Tx) error { return t.Put("raw", key, []byte(key)) }
}

func TestGroupCommit(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		writes    []func(*Tx) error
		commitErr error    // BeforeCommit's answer to the second batch
		wantErrs  []string // per write: "" for success, else part of the error
		wantKeys  []string // the second batch's changes, in seq order
	}{
		{
			name:     "writes queued during a commit share the next one",
			writes:   []func(*Tx) error{put("a"), put("b"), put("c")},
			wantErrs: []string{"", "", ""},
			wantKeys: []string{"a", "b", "c"},
		},
		{
			name: "a failing write fails alone",
			writes: []func(*Tx) error{put("a"), func(t *Tx) error {
				if err := t.Put("raw", "half", nil); err != nil {
					return err
				}
				return boom
			}, put("c")},
			wantErrs: []string{"", "boom", ""},
			wantKeys: []string{"a", "c"},
		},
		{
			name:     "a panicking write fails alone",
			writes:   []func(*Tx) error{put("a"), func(*Tx) error { panic("bad write") }},
			wantErrs: []string{"", "panicked: bad write"},
			wantKeys: []string{"a"},
		},
		{
			name:     "a write that changes nothing still succeeds",
			writes:   []func(*Tx) error{func(t *Tx) error { return t.Delete("raw", "absent") }, put("b")},
			wantErrs: []string{"", ""},
			wantKeys: []string{"b"},
		},
		{
			name:      "BeforeCommit failing fails the whole batch",
			writes:    []func(*Tx) error{put("a"), put("b")},
			commitErr: boom,
			wantErrs:  []string{"boom", "boom"},
			wantKeys:  []string{"a", "b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			g.fail = tc.commitErr
			s := openT(t, "", Options{BeforeCommit: g.beforeCommit})
			errs := startBatch(t, s, g, tc.writes)()
			for i, err := range errs {
				switch want := tc.wantErrs[i]; {
				case want == "" && err != nil:
					t.Errorf("write %d: %v", i, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("write %d: error %v, want one with %q", i, err, want)
				}
			}
			batches := g.seen()
			if len(batches) != 2 {
				t.Fatalf("BeforeCommit saw %d batches, want 2 (the held write, then the queued ones together)", len(batches))
			}
			var keys []string
			for i, c := range batches[1] {
				if c.Seq != 2+uint64(i) {
					t.Errorf("change %d of the batch has seq %d, want %d", i, c.Seq, 2+i)
				}
				keys = append(keys, c.Key)
			}
			if fmt.Sprint(keys) != fmt.Sprint(tc.wantKeys) {
				t.Errorf("batch holds %v, want %v", keys, tc.wantKeys)
			}
			// What is stored is exactly what was acknowledged, and the
			// log is contiguous.
			cs, err := s.ChangesSince(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			wantLog := []string{"held"}
			if tc.commitErr == nil {
				wantLog = append(wantLog, tc.wantKeys...)
			}
			var logKeys []string
			for i, c := range cs {
				if c.Seq != uint64(i+1) {
					t.Errorf("log entry %d has seq %d", i, c.Seq)
				}
				logKeys = append(logKeys, c.Key)
			}
			if fmt.Sprint(logKeys) != fmt.Sprint(wantLog) {
				t.Errorf("log holds %v, want %v", logKeys, wantLog)
			}
			raw := dump(t, s)["raw"]
			wantRaw := 0
			if tc.commitErr == nil {
				wantRaw = len(tc.wantKeys)
			}
			if len(raw) != wantRaw {
				t.Errorf("%d keys stored, want %d: %v", len(raw), wantRaw, raw)
			}
			if _, ok := raw["half"]; ok {
				t.Error("the failed write's first Put was kept")
			}
		})
	}
}

// TestGroupCommitMaxBatch: a queue longer than maxBatch is committed in
// batches of at most maxBatch, every write once, in one contiguous log.
func TestGroupCommitMaxBatch(t *testing.T) {
	g := newGate()
	s := openT(t, "", Options{BeforeCommit: g.beforeCommit})
	writes := make([]func(*Tx) error, maxBatch+5)
	for i := range writes {
		writes[i] = put(fmt.Sprint("k", i))
	}
	for i, err := range startBatch(t, s, g, writes)() {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	batches := g.seen()
	var sizes []int
	next := uint64(1)
	for _, b := range batches {
		sizes = append(sizes, len(b))
		for _, c := range b {
			if c.Seq != next {
				t.Fatalf("BeforeCommit saw seq %d, want %d", c.Seq, next)
			}
			next++
		}
	}
	if fmt.Sprint(sizes) != fmt.Sprint([]int{1, maxBatch, 5}) {
		t.Errorf("batch sizes %v, want [1 %d 5]", sizes, maxBatch)
	}
	if n := len(dump(t, s)["raw"]); n != len(writes) {
		t.Errorf("%d keys stored, want %d", n, len(writes))
	}
}

// TestGroupCommitConcurrent: many writers through the typed API and
// Update at once; BeforeCommit sees every change exactly once, in seq
// order, and the log matches.
func TestGroupCommitConcurrent(t *testing.T) {
	var mu sync.Mutex
	var seen []Change
	s := openT(t, "", Options{BeforeCommit: func(cs []Change) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, cs...)
		return nil
	}})
	const writers, each = 8, 40
	now := time.Now()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				var err error
				switch key := fmt.Sprint(w, "-", i); i % 4 {
				case 0:
					err = s.SaveBinding(testBinding(fmt.Sprint(100+w), "sip:"+key+"@192.0.2.1", now))
				case 1:
					err = s.AppendCDR(testCDR(key, now))
				case 2:
					err = s.PutDialog(key, []byte(key))
				default:
					err = s.Update(func(tx *Tx) error { return tx.Put("raw", key, nil) })
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cs, err := s.ChangesSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != writers*each || len(seen) != len(cs) {
		t.Fatalf("log holds %d changes, BeforeCommit saw %d, want %d", len(cs), len(seen), writers*each)
	}
	for i := range cs {
		if cs[i].Seq != uint64(i+1) || seen[i].Seq != cs[i].Seq || seen[i].Key != cs[i].Key {
			t.Fatalf("change %d: log %d %s, BeforeCommit saw %d %s", i, cs[i].Seq, cs[i].Key, seen[i].Seq, seen[i].Key)
		}
	}
}

// groupStats reads the wait counters of the group commit.
func groupStats(s *Store) (waits, gathered int) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return s.group.waits, s.group.gathered
}

// TestGroupCommitWaitsForCompany: when writes come often, the leader
// waits for the next one and commits both together; a full batch ends the
// wait at once (the delay here is far longer than the test may take).
func TestGroupCommitWaitsForCompany(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	s := openT(t, "", Options{GroupDelay: time.Hour, BeforeCommit: func(cs []Change) error {
		mu.Lock()
		defer mu.Unlock()
		var keys []string
		for _, c := range cs {
			keys = append(keys, c.Key)
		}
		batches = append(batches, keys)
		return nil
	}})
	s.gmu.Lock()
	s.group.max, s.group.gap = 2, 0 // as if writes had been coming often
	s.gmu.Unlock()
	errA := make(chan error, 1)
	go func() { errA <- s.PutDialog("a", []byte("1")) }()
	waitFor(t, "the first write to wait for company", func() bool { w, _ := groupStats(s); return w == 1 })
	if err := s.PutDialog("b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(batches) != "[[a b]]" {
		t.Errorf("batches %v, want [[a b]]", batches)
	}
	if _, g := groupStats(s); g != 1 {
		t.Errorf("%d waits gathered company, want 1", g)
	}
}

// TestGroupCommitIdleDoesNotWait: on a store that was idle, a write is
// committed without waiting (here the wait would outlast the test).
func TestGroupCommitIdleDoesNotWait(t *testing.T) {
	s := openT(t, "", Options{GroupDelay: time.Hour})
	if err := s.PutDialog("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if w, _ := groupStats(s); w != 0 {
		t.Errorf("%d waits, want none", w)
	}
}

// TestGroupCommitLoneWriterStopsWaiting: one goroutine writing one thing
// after another gains nothing from waits; after two that gathered nothing
// the store stops waiting for a while.
func TestGroupCommitLoneWriterStopsWaiting(t *testing.T) {
	s := openT(t, "", Options{GroupDelay: 5 * time.Millisecond})
	s.gmu.Lock()
	s.group.gap = 0
	s.gmu.Unlock()
	const writes = 40
	for i := range writes {
		if err := s.PutDialog(fmt.Sprint("d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Two waits, lonelyBatches without, two more, then no more waits.
	waits, gathered := groupStats(s)
	if want := 2 * ((writes + lonelyBatches + 1) / (lonelyBatches + 2)); waits > want || gathered != 0 {
		t.Errorf("%d waits (%d gathered company) in %d writes, want at most %d and none gathering", waits, gathered, writes, want)
	}
}
