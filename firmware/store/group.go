package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit.
//
// A durable write costs one bbolt commit: two fdatasyncs and the page
// writes, about 200 µs of CPU on the reference machine whatever it holds.
// Writes made at about the same time (REGISTERs from many phones, call
// state and CDRs of many calls) share one transaction and one commit: the
// first writer finding no commit in progress becomes the leader; writers
// arriving while it commits queue up, and the first of them leads the next
// commit with everything queued by then (at most maxBatch writes).
//
// That alone batches only what arrives during a commit, which at a few
// hundred writes a second is almost nothing. So when writes have lately
// been arriving less than twice Options.GroupDelay apart, the leader first
// waits up to GroupDelay (default 2 ms) for company. An idle box does not wait: a
// lone REGISTER is committed at once. A writer that writes one thing after
// another (loading or expiring bindings) would gain nothing from waiting
// but arrives often enough to make the leader wait: after two waits in a
// row that gathered nothing, the next lonelyBatches batches do not wait.
//
// bbolt's own DB.Batch was not used: it offers no hook between the last
// function of a batch and the commit, so Options.BeforeCommit could not see
// the batch's changes once and in seq order; it retries the batch's
// functions one by one after a failure, by which time the twin may have
// been sent changes under numbers that are then reused for other changes;
// and it always waits its full delay. Here a function that fails is
// dropped and the rest are run again in a new transaction before
// BeforeCommit is called, so the twin sees only what is committed.

// maxBatch bounds the writes sharing one transaction, so one commit (and
// the twin's ack of it) stays short.
const maxBatch = 128

// DefaultGroupDelay is Options.GroupDelay when it is 0.
const DefaultGroupDelay = 2 * time.Millisecond

// lonelyBatches is how many batches are committed without waiting after
// two waits in a row gathered no other write.
const lonelyBatches = 32

// errLead wakes a queued writer to lead the next commit.
var errLead = errors.New("lead the next commit")

type groupWrite struct {
	fn   func(*Tx) error
	done chan error // cap 1: errLead, or the write's result
	err  error
}

// groupQueue is the writers waiting for the next commit.
type groupQueue struct {
	queue []*groupWrite
	busy  bool // a leader is committing (or waiting for company)
	max   int  // writes per batch (maxBatch; tests lower it)

	last     time.Time     // arrival of the newest write
	gap      time.Duration // moving average of the time between arrivals; <0: none yet
	waiting  chan struct{} // while the leader waits: closed when the batch is full
	misses   int           // waits in a row that gathered nothing
	noWait   int           // batches still to commit without waiting
	waits    int           // waits so far (for tests)
	gathered int           // waits that gathered company (for tests)
}

// arrive records a write's arrival in the moving average of the gaps
// between writes. Called with gmu held.
func (g *groupQueue) arrive(now time.Time) {
	if !g.last.IsZero() {
		if d := now.Sub(g.last); g.gap < 0 {
			g.gap = d
		} else {
			g.gap += (d - g.gap) / 8
		}
	}
	g.last = now
	if g.waiting != nil && len(g.queue) >= g.max {
		close(g.waiting)
		g.waiting = nil
	}
}

// groupUpdate is Update for the hot writes: fn runs in a transaction
// shared with other writers' functions and commits durably with them (and
// with one BeforeCommit call for them all). fn may run more than once, each
// time in a new transaction: it must do nothing but write through the Tx.
// An error from fn fails this write only; an error from BeforeCommit or the
// commit fails every write of the batch.
func (s *Store) groupUpdate(fn func(*Tx) error) error {
	w := &groupWrite{fn: fn, done: make(chan error, 1)}
	s.gmu.Lock()
	s.group.queue = append(s.group.queue, w)
	s.group.arrive(time.Now())
	if s.group.busy {
		s.gmu.Unlock()
		if err := <-w.done; err != errLead {
			return err
		}
		s.gmu.Lock()
	} else {
		s.group.busy = true
	}
	// Leading: w is first in the queue.
	s.waitForCompany()
	n := min(len(s.group.queue), s.group.max)
	batch := make([]*groupWrite, n)
	copy(batch, s.group.queue)
	rest := copy(s.group.queue, s.group.queue[n:])
	clear(s.group.queue[rest:])
	s.group.queue = s.group.queue[:rest]
	s.gmu.Unlock()

	s.commitBatch(batch)

	s.gmu.Lock()
	if len(s.group.queue) > 0 {
		s.group.queue[0].done <- errLead
	} else {
		s.group.busy = false
	}
	s.gmu.Unlock()
	for _, o := range batch[1:] {
		o.done <- o.err
	}
	return batch[0].err
}

// waitForCompany lets the leader wait up to the group delay for more
// writes when they have lately been arriving often enough to be met.
// Called and returns with gmu held.
func (s *Store) waitForCompany() {
	g := &s.group
	switch {
	case s.opts.GroupDelay < 0 || len(g.queue) >= g.max || g.gap < 0 || g.gap >= 2*s.opts.GroupDelay:
		// Writes further apart than twice the delay would rarely be
		// met: at a gap of twice the delay, about 40 % of waits are.
		return
	case g.noWait > 0:
		g.noWait--
		return
	}
	before := len(g.queue)
	ch := make(chan struct{})
	g.waiting = ch
	g.waits++
	s.gmu.Unlock()
	t := time.NewTimer(s.opts.GroupDelay)
	select {
	case <-t.C:
	case <-ch:
	}
	t.Stop()
	s.gmu.Lock()
	if g.waiting == ch {
		g.waiting = nil
	}
	if len(g.queue) > before {
		g.misses = 0
		g.gathered++
		return
	}
	if g.misses++; g.misses >= 2 {
		g.misses = 0
		g.noWait = lonelyBatches
	}
}

// commitBatch runs the batch's functions in one transaction, in order, and
// commits it, setting each write's err. A function that fails gets its
// error and the transaction is started over without it.
func (s *Store) commitBatch(batch []*groupWrite) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live := batch
	for len(live) > 0 {
		failed := -1
		err := s.db.Update(func(btx *bolt.Tx) error {
			seq, first := logBounds(btx)
			t := &Tx{tx: btx, seq: seq}
			for i, w := range live {
				if err := callWrite(w.fn, t); err != nil {
					w.err, failed = err, i
					return err
				}
			}
			if len(t.changes) == 0 {
				return nil
			}
			if err := s.finish(btx, t.seq, first); err != nil {
				return err
			}
			if s.opts.BeforeCommit != nil {
				if err := s.opts.BeforeCommit(t.changes); err != nil {
					return fmt.Errorf("before commit of changes %d..%d: %w", t.changes[0].Seq, t.seq, err)
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range live {
				w.err = err
			}
			return
		}
		// Drop the write that failed; the others run again.
		live = append(live[:failed:failed], live[failed+1:]...)
	}
}

// callWrite runs one write's function, turning a panic into its error so
// that one bad write cannot take the leader, and with it every writer
// waiting on the batch, down.
func callWrite(fn func(*Tx) error, t *Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write panicked: %v", r)
		}
	}()
	return fn(t)
}
