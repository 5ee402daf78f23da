package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Group commit.
//
// A durable write costs one bbolt commit, which is dominated by its fsync.
// Writes that arrive together (REGISTERs from many phones, CDRs at the end
// of many calls) share one transaction and one fsync: the first writer
// finding no commit in progress becomes the leader and commits at once;
// writers arriving while it commits queue up, and the first of them leads
// the next commit with everything queued by then (at most maxBatch
// writes). So a lone write waits for nothing but its own fsync, and under
// load a batch gathers for exactly as long as one commit takes: no timer,
// no fixed delay to tune.
//
// bbolt's own DB.Batch was not used: it offers no hook between the last
// function of a batch and the commit, so Options.BeforeCommit could not see
// the batch's changes once and in seq order; and it retries the batch's
// functions one by one after a failure, by which time the twin may have
// been sent changes under numbers that are then reused for other changes.
// Here a function that fails is dropped and the rest are run again in a new
// transaction before BeforeCommit is called, so the twin sees only what is
// committed.

// maxBatch bounds the writes sharing one transaction, so one commit (and
// the twin's ack of it) stays short.
const maxBatch = 128

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
	busy  bool // a leader is committing
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
	n := min(len(s.group.queue), maxBatch)
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
