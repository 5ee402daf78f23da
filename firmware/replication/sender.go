package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// SenderConfig configures the active's side. Only Node is required.
type SenderConfig struct {
	// Node is this box's node name, sent to the standby.
	Node string
	// Peer, if set, is the only node name accepted in a hello.
	Peer string
	// TLS is the server side of the link (the pairing package derives it
	// from the pairing key; it should require and verify the client's
	// certificate). nil: connections are used as they are (tests).
	TLS *tls.Config
	// AckTimeout bounds how long a write waits for the standby's ack
	// (0: DefaultAckTimeout).
	AckTimeout time.Duration
	// HeartbeatInterval: how often an idle link carries a heartbeat
	// (0: DefaultHeartbeatInterval).
	HeartbeatInterval time.Duration
	// IdleTimeout: a standby silent this long is dropped; it must cover a
	// snapshot's restore on the standby (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and the hello
	// (0: DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// DiscardDiverged: a standby whose changes diverged from ours (it was
	// active too) gets our snapshot without its store being merged into
	// ours first, losing its own changes. Default: merge (docs/CLUSTER.md
	// "Merge rules").
	DiscardDiverged bool
	// Firmware is this box's running firmware version, sent to the
	// standby ("" unknown).
	Firmware string
	// OnEvent, if set, is called for every event, from the link's
	// goroutines and from BeforeCommit (with the store's write lock held):
	// it must return quickly and must not write to the store.
	OnEvent func(Event)
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
}

// Sender streams the active's store to one standby at a time. Create it
// with NewSender, hand BeforeCommit to store.Options, then Serve.
type Sender struct {
	cfg SenderConfig
	log *slog.Logger

	ackTimeouts atomic.Uint64

	mu  sync.Mutex
	cur *session // the standby's link, nil when none
	// The bundle on offer to the standby (bundle.go).
	offer     *Offer
	openOffer func() (io.ReadCloser, error)
	fetch     FetchStatus
}

// SenderStatus is a snapshot of the link as the active sees it.
type SenderStatus struct {
	Connected bool
	Peer      string
	// InSync: writes are acknowledged by the standby before they commit.
	InSync bool
	// Sent and Acked are the last sequence sent to / committed by the standby.
	Sent, Acked uint64
	// AckTimeouts counts writes that stopped waiting for the standby's ack
	// (since NewSender).
	AckTimeouts uint64
	// PeerFirmware is the firmware version the standby named in its
	// hello; Since is when this link was accepted.
	PeerFirmware string
	Since        time.Time
}

// NewSender returns a Sender; it does nothing until Serve or ServeConn.
func NewSender(cfg SenderConfig) *Sender {
	cfg.AckTimeout = orDefault(cfg.AckTimeout, DefaultAckTimeout)
	cfg.HeartbeatInterval = orDefault(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.HandshakeTimeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Sender{cfg: cfg, log: log.With("part", "replication", "side", "active")}
}

// session is one standby's link. Fields under mu.
type session struct {
	conn     net.Conn
	peer     string
	firmware string        // the standby's, from its hello
	since    time.Time     // when the link was accepted
	done     chan struct{} // closed by close
	wake     chan struct{} // cap 1: there may be new changes

	mu           sync.Mutex
	err          error
	snapshotting bool   // sent is not meaningful until the standby restored
	sent         uint64 // last seq written (or queued) to the standby
	acked        uint64 // last seq the standby committed
	hint         uint64 // last seq of the newest batch seen by BeforeCommit
	inSync       bool
	stalled      bool             // an ack timed out and no ack came since
	queue        [][]store.Change // batches to send, in order, after sent was moved past them
	pending      [][]store.Change // batches BeforeCommit saw while catching up
	ackCh        chan struct{}    // closed and replaced when acked grows
}

func (ss *session) close(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.err != nil {
		return
	}
	if err == nil {
		err = errors.New("link closed")
	}
	ss.err = err
	close(ss.done)
	ss.conn.Close()
}

// adoptPending moves the pending batches that directly follow sent to
// the queue. Called with mu held.
func (ss *session) adoptPending() {
	for len(ss.pending) > 0 && !ss.snapshotting {
		b := ss.pending[0]
		last := b[len(b)-1].Seq
		switch {
		case last <= ss.sent:
			ss.pending = ss.pending[1:]
		case b[0].Seq == ss.sent+1:
			ss.queue = append(ss.queue, b)
			ss.sent = last
			ss.pending = ss.pending[1:]
		default:
			return // a gap: the log fills it first
		}
	}
}

func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

func (s *Sender) event(e Event) {
	e.Time = time.Now()
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(e)
	}
}

// Status reports the link to the standby.
func (s *Sender) Status() SenderStatus {
	s.mu.Lock()
	ss := s.cur
	s.mu.Unlock()
	if ss == nil {
		return SenderStatus{AckTimeouts: s.ackTimeouts.Load()}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return SenderStatus{Connected: ss.err == nil, Peer: ss.peer, InSync: ss.inSync && ss.err == nil, Sent: ss.sent, Acked: ss.acked, AckTimeouts: s.ackTimeouts.Load(),
		PeerFirmware: ss.firmware, Since: ss.since}
}

// InSync reports whether a standby is connected and acknowledging writes.
func (s *Sender) InSync() bool { return s.Status().InSync }

// BeforeCommit is store.Options.BeforeCommit for the active's store. With
// a standby connected and in sync it sends the batch and waits for the
// standby's ack, at most AckTimeout; on timeout the standby is marked out
// of sync and the write goes on. A standby streaming live but not yet in
// sync is waited for (at most AckTimeout) only until it trails by 32
// changes or fewer; one whose ack timed out is not waited for until it
// acks again. With no standby, or one still catching up from the log or
// a snapshot, it returns at once (the batch reaches the standby from the
// log). It never fails the write.
func (s *Sender) BeforeCommit(changes []store.Change) error {
	if len(changes) == 0 {
		return nil
	}
	s.mu.Lock()
	ss := s.cur
	s.mu.Unlock()
	if ss == nil {
		return nil
	}
	first, last := changes[0].Seq, changes[len(changes)-1].Seq
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return nil
	}
	ss.hint = last
	if !ss.snapshotting && first <= ss.sent {
		// Numbers already sent come again: a batch we sent was never
		// committed here, so the standby holds changes we do not.
		ss.mu.Unlock()
		err := fmt.Errorf("change %d was sent to the standby but not committed here", first)
		s.log.Warn("replication: standby is ahead of this store; resynchronising", "err", err)
		ss.close(err)
		return nil
	}
	if ss.snapshotting || ss.sent != first-1 || len(ss.queue) >= maxQueued {
		// Catching up (or too much queued): the writer reads it from the
		// log, or takes it from pending once it has sent what precedes it
		// (else a steady stream of writes would keep it one batch behind).
		ss.inSync = false
		for n := len(ss.pending); n > 0 && ss.pending[n-1][0].Seq >= first; n-- {
			ss.pending = ss.pending[:n-1] // never committed: its numbers come again
		}
		if len(ss.pending) >= maxQueued {
			ss.pending = ss.pending[1:]
		}
		ss.pending = append(ss.pending, changes)
		ss.mu.Unlock()
		ss.poke()
		return nil
	}
	// In sync, wait for this batch's ack. Streaming live but behind (it
	// just caught up from the log, or acked again after a timeout), wait
	// until it is at most syncWindow changes behind: that bounds the lag
	// and brings it back in sync even under a steady stream of writes,
	// which it could otherwise trail for ever. Once an ack timed out,
	// do not wait until the standby acks something again.
	wasInSync := ss.inSync
	target := last
	if !ss.inSync && ss.sent-ss.acked > syncWindow {
		target = last - syncWindow
	}
	wait, ackCh := !ss.stalled, ss.ackCh
	ss.queue = append(ss.queue, changes)
	ss.sent = last
	ss.mu.Unlock()
	ss.poke()
	if !wait {
		return nil
	}
	timer := time.NewTimer(s.cfg.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ackCh:
		case <-timer.C:
			ss.mu.Lock()
			if ss.acked >= target {
				ss.mu.Unlock()
				return s.nowInSync(ss, last)
			}
			// No more waiting until the standby acks something again.
			ss.stalled = true
			ss.inSync = false
			peer, acked := ss.peer, ss.acked
			ss.mu.Unlock()
			s.ackTimeouts.Add(1)
			if !wasInSync {
				return nil // already out of sync: nothing new to report
			}
			err := fmt.Errorf("no ack for change %d within %s (standby at %d)", last, s.cfg.AckTimeout, acked)
			s.log.Warn("replication: standby out of sync; writes no longer wait for it", "peer", peer, "err", err)
			s.event(Event{Kind: OutOfSync, Peer: peer, Seq: last, Err: err})
			return nil
		case <-ss.done:
			return nil
		}
		ss.mu.Lock()
		acked := ss.acked
		ackCh = ss.ackCh
		ss.mu.Unlock()
		if acked >= target {
			return s.nowInSync(ss, last)
		}
	}
}

// nowInSync marks the standby in sync after it acked seq in time.
func (s *Sender) nowInSync(ss *session, seq uint64) error {
	ss.mu.Lock()
	was := ss.inSync
	ok := ss.err == nil && !ss.snapshotting && ss.acked >= seq
	if ok {
		ss.inSync = true
	}
	peer := ss.peer
	ss.mu.Unlock()
	if ok && !was {
		s.log.Info("standby in sync", "peer", peer, "seq", seq)
		s.event(Event{Kind: InSync, Peer: peer, Seq: seq})
	}
	return nil
}

// Serve accepts standbys on ln until ctx ends, then closes ln and the
// link. A new standby replaces the previous one. st is the active's store
// (the one whose Options.BeforeCommit is s.BeforeCommit).
func (s *Sender) Serve(ctx context.Context, st *store.Store, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting standby connections: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, st, conn); err != nil {
				s.log.Info("replication link ended", "remote", conn.RemoteAddr(), "err", err)
			}
		}()
	}
}

// ServeConn runs the replication link over one accepted connection until
// it fails or ctx ends, and closes conn.
func (s *Sender) ServeConn(ctx context.Context, st *store.Store, conn net.Conn) error {
	defer conn.Close()
	stopEarly := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopEarly()
	if s.cfg.TLS != nil {
		tc, err := handshake(ctx, tls.Server(conn, s.cfg.TLS), s.cfg.HandshakeTimeout)
		if err != nil {
			s.event(Event{Kind: Refused, Err: err})
			return err
		}
		conn = tc
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	typ, payload, err := readFrame(conn)
	if err != nil {
		return fmt.Errorf("reading hello: %w", err)
	}
	if typ == msgFetch {
		return s.serveFetch(conn, payload)
	}
	if typ != msgHello {
		return fmt.Errorf("reading hello: got frame type %d", typ)
	}
	var h hello
	if err := json.Unmarshal(payload, &h); err != nil {
		return fmt.Errorf("decoding hello: %w", err)
	}
	if refuse := s.checkHello(h); refuse != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		_ = writeFrame(conn, msgError, []byte(refuse.Error()))
		s.event(Event{Kind: Refused, Peer: h.Node, Err: refuse})
		return refuse
	}

	// The standby is back: a link it left behind is dead.
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	s.mu.Unlock()
	if old != nil {
		old.close(errors.New("replaced by a new connection from the standby"))
	}

	mode, why := s.chooseMode(st, h)
	merged := mode == modeMerge
	if merged {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if err := writeJSON(conn, msgStart, start{Proto: ProtocolVersion, Node: s.cfg.Node, Mode: mode, Seq: st.Seq(), Firmware: s.cfg.Firmware}); err != nil {
			return err
		}
		stopBeats := s.beatWhile(st, conn)
		rep, err := s.mergeFrom(st, conn)
		stopBeats()
		s.event(Event{Kind: Merged, Peer: h.Node, Seq: st.Seq(), Merge: rep, Err: err})
		if err != nil {
			s.log.Error("merging the diverged standby's store failed", "peer", h.Node, "err", err)
			_ = writeFrame(conn, msgError, []byte("merge failed"))
			return err
		}
		s.log.Warn("merged the diverged standby's store into ours", "peer", h.Node,
			"bindings", rep.Bindings, "cdrs", rep.CDRs, "config_versions", rep.ConfigVersions, "config_conflict", rep.ConfigConflict)
		mode = modeSnapshot
	}
	ss := &session{
		conn:     conn,
		peer:     h.Node,
		firmware: h.Firmware,
		since:    time.Now(),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		sent:     h.Seq,
		acked:    h.Seq,
		ackCh:    make(chan struct{}),
	}
	ss.snapshotting = mode == modeSnapshot
	s.mu.Lock()
	old = s.cur
	s.cur = ss
	s.mu.Unlock()
	if old != nil {
		old.close(errors.New("replaced by a new connection from the standby"))
	}
	defer func() {
		s.mu.Lock()
		if s.cur == ss {
			s.cur = nil
		}
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { ss.close(ctx.Err()) })
	defer stop()

	log := s.log.With("peer", h.Node)
	log.Info("standby connected", "standby_seq", h.Seq, "seq", st.Seq(), "mode", mode, "why", why)
	s.event(Event{Kind: Connected, Peer: h.Node, Seq: st.Seq()})

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		ss.close(s.readAcks(st, ss))
	}()
	werr := s.writeLoop(st, ss, mode, merged)
	ss.close(werr)
	<-readDone
	ss.mu.Lock()
	err = ss.err
	ss.mu.Unlock()
	log.Info("standby disconnected", "err", err)
	s.event(Event{Kind: Disconnected, Peer: h.Node, Seq: st.Seq(), Err: err})
	return err
}

func (s *Sender) checkHello(h hello) error {
	switch {
	case h.Proto != ProtocolVersion:
		return fmt.Errorf("standby %q speaks replication protocol %d, this box %d", h.Node, h.Proto, ProtocolVersion)
	case h.Node == s.cfg.Node && h.Node != "":
		return fmt.Errorf("standby has this box's own node name %q", h.Node)
	case s.cfg.Peer != "" && h.Node != s.cfg.Peer:
		return fmt.Errorf("standby calls itself %q, the twin is %q", h.Node, s.cfg.Peer)
	}
	return nil
}

// chooseMode decides between catch-up from the log and a snapshot.
func (s *Sender) chooseMode(st *store.Store, h hello) (mode, why string) {
	seq := st.Seq()
	switch {
	case h.Seq > seq:
		return s.diverged(), fmt.Sprintf("standby is ahead (%d > %d)", h.Seq, seq)
	case h.Seq == 0:
		if first, _, err := st.LogBounds(); err != nil || first > 1 {
			return modeSnapshot, "standby is empty and the log no longer starts at 1"
		}
		return modeChanges, "standby is empty"
	}
	ours := lastSum(st, h.Seq)
	switch {
	case ours == "":
		return modeSnapshot, fmt.Sprintf("change %d is no longer in the log", h.Seq)
	case ours != h.LastSum:
		return s.diverged(), fmt.Sprintf("standby's change %d differs from ours", h.Seq)
	}
	return modeChanges, "standby's log matches"
}

func (s *Sender) diverged() string {
	if s.cfg.DiscardDiverged {
		return modeSnapshot
	}
	return modeMerge
}

// beatWhile sends heartbeats on conn until the returned func is called,
// which waits for the last one to be written. It keeps the standby from
// timing the link out while this side is busy before its write loop runs.
func (s *Sender) beatWhile(st *store.Store, conn net.Conn) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
				if writeJSON(conn, msgHeartbeat, s.beat(st)) != nil {
					return
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}

// mergeFrom receives the standby's snapshot into a scratch store beside
// ours and merges it into st.
func (s *Sender) mergeFrom(st *store.Store, conn net.Conn) (*MergeReport, error) {
	dir, err := os.MkdirTemp(filepath.Dir(st.Path()), "merge-")
	if err != nil {
		return nil, fmt.Errorf("merging the standby's store: %w", err)
	}
	defer os.RemoveAll(dir)
	remote, err := store.Open(dir, store.Options{Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("merging the standby's store: %w", err)
	}
	defer remote.Close()
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	sr := &snapshotReader{r: conn, onFrame: func() { _ = conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout)) }}
	if err := remote.RestoreSnapshot(sr); err != nil {
		return nil, fmt.Errorf("receiving the standby's store: %w", err)
	}
	rep, err := Merge(st, remote)
	if err != nil {
		return &rep, fmt.Errorf("merging the standby's store: %w", err)
	}
	return &rep, nil
}

// readAcks reads the standby's frames until the link fails.
func (s *Sender) readAcks(st *store.Store, ss *session) error {
	for {
		_ = ss.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		typ, payload, err := readFrame(ss.conn)
		if err != nil {
			return fmt.Errorf("reading from standby: %w", err)
		}
		switch typ {
		case msgAck, msgRestored:
			seq, err := decodeSeq(payload)
			if err != nil {
				return fmt.Errorf("reading from standby: %w", err)
			}
			committed := st.Seq()
			restored := false
			ss.mu.Lock()
			if typ == msgRestored {
				if !ss.snapshotting {
					ss.mu.Unlock()
					return errors.New("standby reports a restored snapshot that was not sent")
				}
				ss.snapshotting = false
				ss.sent = seq
				ss.acked = seq
				restored = true
			} else if seq > ss.acked && !ss.snapshotting {
				if sent := ss.sent; seq > sent {
					ss.mu.Unlock()
					return fmt.Errorf("standby acks change %d, only %d were sent", seq, sent)
				}
				ss.acked = seq
				ss.stalled = false
			}
			close(ss.ackCh)
			ss.ackCh = make(chan struct{})
			nowInSync := !ss.inSync && !ss.snapshotting && ss.acked >= ss.sent && ss.sent >= committed
			if nowInSync {
				ss.inSync = true
			}
			peer := ss.peer
			ss.mu.Unlock()
			ss.poke()
			if restored {
				s.log.Info("standby restored the snapshot", "peer", peer, "seq", seq)
				s.event(Event{Kind: SnapshotDone, Peer: peer, Seq: seq})
			}
			if nowInSync {
				s.log.Info("standby in sync", "peer", peer, "seq", seq)
				s.event(Event{Kind: InSync, Peer: peer, Seq: seq})
			}
		case msgError:
			return fmt.Errorf("standby gave up: %s", clip(payload))
		default:
			return fmt.Errorf("reading from standby: unexpected frame type %d", typ)
		}
	}
}

// writeLoop is the only writer of the link after the hello.
func (s *Sender) writeLoop(st *store.Store, ss *session, mode string, merged bool) error {
	w := ss.conn
	deadline := func() { _ = w.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout)) }
	deadline()
	if !merged { // after a merge the standby had its start frame
		if err := writeJSON(w, msgStart, start{Proto: ProtocolVersion, Node: s.cfg.Node, Mode: mode, Seq: st.Seq(), Firmware: s.cfg.Firmware}); err != nil {
			return err
		}
	}
	if mode == modeSnapshot {
		if err := s.sendSnapshot(st, ss); err != nil {
			return err
		}
	}
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	poll := time.NewTimer(0)
	<-poll.C
	pollWait := time.Millisecond
	for {
		ss.mu.Lock()
		if ss.err != nil {
			ss.mu.Unlock()
			return nil
		}
		if len(ss.queue) > 0 {
			q := ss.queue
			ss.queue = nil
			ss.mu.Unlock()
			deadline()
			for _, batch := range q {
				if err := writeChanges(w, batch); err != nil {
					return err
				}
			}
			continue
		}
		ss.adoptPending()
		if len(ss.queue) > 0 {
			ss.mu.Unlock()
			continue
		}
		snapshotting, sent0, hint := ss.snapshotting, ss.sent, ss.hint
		ss.mu.Unlock()

		// sent0 may be ahead of the store: a batch queued by BeforeCommit
		// is sent before its transaction commits.
		if !snapshotting && sent0 < st.Seq() {
			cs, err := st.ChangesSince(sent0, catchupBatch)
			switch {
			case errors.Is(err, store.ErrTrimmed):
				s.log.Info("standby fell behind the log; sending a snapshot", "peer", ss.peer, "sent", sent0)
				ss.mu.Lock()
				ss.snapshotting = true
				ss.inSync = false
				ss.mu.Unlock()
				if err := s.sendSnapshot(st, ss); err != nil {
					return err
				}
				continue
			case err != nil:
				return fmt.Errorf("reading changes for the standby: %w", err)
			case len(cs) > 0:
				ss.mu.Lock()
				same := ss.sent == sent0 && !ss.snapshotting
				if same {
					ss.sent = cs[len(cs)-1].Seq
					ss.adoptPending()
				}
				ss.mu.Unlock()
				if same {
					deadline()
					if err := writeChanges(w, cs); err != nil {
						return err
					}
				}
				pollWait = time.Millisecond
				continue
			}
		}
		// Nothing to send. If a batch is on its way to the log, look again
		// soon: it becomes readable only once its transaction committed.
		var pollC <-chan time.Time
		if !snapshotting && hint > sent0 {
			poll.Reset(pollWait)
			pollC = poll.C
			pollWait = min(2*pollWait, 50*time.Millisecond)
		}
		select {
		case <-ss.wake:
		case <-pollC:
		case <-hb.C:
			deadline()
			if err := writeJSON(w, msgHeartbeat, s.beat(st)); err != nil {
				return err
			}
		case <-ss.done:
			return nil
		}
		if pollC != nil && !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
	}
}

// writeChanges sends a batch, split when it would not fit in a frame.
func writeChanges(w interface{ Write([]byte) (int, error) }, cs []store.Change) error {
	b, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("encoding changes: %w", err)
	}
	if len(b)+1 > maxFrame && len(cs) > 1 {
		if err := writeChanges(w, cs[:len(cs)/2]); err != nil {
			return err
		}
		return writeChanges(w, cs[len(cs)/2:])
	}
	return writeFrame(w, msgChanges, b)
}

// sendSnapshot streams the whole store; the standby answers with a
// restored frame (handled by readAcks), after which catch-up resumes from
// the sequence it names.
func (s *Sender) sendSnapshot(st *store.Store, ss *session) error {
	s.event(Event{Kind: SnapshotStarted, Peer: ss.peer, Seq: st.Seq()})
	// A snapshot may take long: push the deadline on per chunk.
	w := deadlineWriter{conn: ss.conn, d: s.cfg.IdleTimeout}
	if err := st.Snapshot(snapshotWriter{w}); err != nil {
		return fmt.Errorf("sending snapshot: %w", err)
	}
	if err := writeFrame(w, msgSnapEnd, nil); err != nil {
		return fmt.Errorf("sending snapshot: %w", err)
	}
	return nil
}

type deadlineWriter struct {
	conn net.Conn
	d    time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.d))
	return w.conn.Write(p)
}
