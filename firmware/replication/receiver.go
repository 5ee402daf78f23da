package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// ReceiverConfig configures the standby's side. Node, Store and Dial are
// required.
type ReceiverConfig struct {
	// Node is this box's node name, sent in the hello.
	Node string
	// Peer, if set, is the only node name accepted from the active.
	Peer string
	// Store is the standby's store; the Receiver writes it with Apply and
	// RestoreSnapshot only, and nothing else may write it while Run runs
	// (a local write would diverge from the active; it would be merged
	// back, see docs/CLUSTER.md "Merge rules", but is not meant to happen).
	Store *store.Store
	// Dial opens a connection to the active (the caller tries the
	// crossover, then the LAN address: DialFirst does that).
	Dial func(ctx context.Context) (net.Conn, error)
	// TLS is the client side of the link (it should present this box's
	// certificate and verify the active's). nil: connections are used as
	// they are (tests).
	TLS *tls.Config
	// IdleTimeout: an active silent this long is dropped and redialled;
	// it must exceed the active's heartbeat interval (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and the start frame
	// (0: DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection attempts
	// (0: DefaultMinBackoff, DefaultMaxBackoff); it doubles after each
	// failure, with jitter, and starts over once a link got in sync.
	MinBackoff, MaxBackoff time.Duration
	// OnEvent, if set, is called for every event from Run's goroutine; it
	// must return quickly.
	OnEvent func(Event)
	// Firmware is this box's running firmware version, sent in the hello
	// ("" unknown).
	Firmware string
	// OnOffer, if set, is called from Run's goroutine with the update
	// bundle each heartbeat of the active offers (a rolling update, see
	// Fetch); it must return quickly.
	OnOffer func(Offer)
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
}

// Receiver keeps the standby's store up to date from the active.
type Receiver struct {
	cfg ReceiverConfig
	log *slog.Logger

	mu          sync.Mutex
	connected   bool
	restoring   bool
	peerSeq     uint64    // the active's sequence, as last heard
	behindSince time.Time // when the local store was last seen in sync; zero: in sync
	inSync      bool
	// peerFirmware is the active's firmware version, from its start frame.
	peerFirmware string
}

// PeerFirmware is the firmware version the active named when the link
// last started ("" unknown).
func (r *Receiver) PeerFirmware() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peerFirmware
}

// Lag is how far the standby is behind the active, as last heard.
type Lag struct {
	// Changes not yet applied.
	Changes uint64
	// Time since the standby was last known to hold everything (0 when it
	// does now).
	Time time.Duration
}

// NewReceiver checks cfg and returns a Receiver; Run starts it.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("replication receiver: no store")
	case cfg.Dial == nil:
		return nil, errors.New("replication receiver: no dial function")
	}
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.HandshakeTimeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.MinBackoff = orDefault(cfg.MinBackoff, DefaultMinBackoff)
	cfg.MaxBackoff = max(orDefault(cfg.MaxBackoff, DefaultMaxBackoff), cfg.MinBackoff)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{cfg: cfg, log: log.With("part", "replication", "side", "standby"), behindSince: time.Now()}, nil
}

// InSync reports whether the standby is connected and holds every change
// the active last reported.
func (r *Receiver) InSync() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inSync
}

// Lag reports how far behind the standby is.
func (r *Receiver) Lag() Lag {
	local := r.cfg.Store.Seq()
	r.mu.Lock()
	defer r.mu.Unlock()
	var l Lag
	if r.peerSeq > local {
		l.Changes = r.peerSeq - local
	}
	if !r.inSync && !r.behindSince.IsZero() {
		l.Time = time.Since(r.behindSince)
	}
	return l
}

func (r *Receiver) event(e Event) {
	e.Time = time.Now()
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(e)
	}
}

// progress records the local and the active's sequence and reports the
// change of InSync.
func (r *Receiver) progress(local, peer uint64, peerName string) {
	r.mu.Lock()
	r.peerSeq = peer
	was := r.inSync
	r.inSync = r.connected && !r.restoring && local >= r.peerSeq
	switch {
	case r.inSync:
		r.behindSince = time.Time{}
	case r.behindSince.IsZero():
		r.behindSince = time.Now()
	}
	now := r.inSync
	r.mu.Unlock()
	if now && !was {
		r.log.Info("in sync with the active", "peer", peerName, "seq", local)
		r.event(Event{Kind: InSync, Peer: peerName, Seq: local})
	}
}

func (r *Receiver) setLink(connected, restoring bool) {
	r.mu.Lock()
	r.connected, r.restoring = connected, restoring
	if !connected || restoring {
		r.inSync = false
		if r.behindSince.IsZero() {
			r.behindSince = time.Now()
		}
	}
	r.mu.Unlock()
}

// Run connects to the active and applies what it sends, reconnecting with
// backoff, until ctx ends. It returns nil then.
func (r *Receiver) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	for ctx.Err() == nil {
		synced, err := r.runOnce(ctx)
		r.setLink(false, false)
		if ctx.Err() != nil {
			return nil
		}
		if synced {
			backoff = r.cfg.MinBackoff
		}
		r.log.Info("replication link down; reconnecting", "err", err, "in", backoff)
		r.event(Event{Kind: Disconnected, Seq: r.cfg.Store.Seq(), Err: err})
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
	return nil
}

// runOnce runs one connection; synced says whether it got in sync.
func (r *Receiver) runOnce(ctx context.Context) (synced bool, err error) {
	conn, err := r.cfg.Dial(ctx)
	if err != nil {
		return false, fmt.Errorf("dialling the active: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if r.cfg.TLS != nil {
		tc, err := handshake(ctx, tls.Client(conn, r.cfg.TLS), r.cfg.HandshakeTimeout)
		if err != nil {
			r.event(Event{Kind: Refused, Err: err})
			return false, err
		}
		conn = tc
	}
	st := r.cfg.Store
	h := hello{Proto: ProtocolVersion, Node: r.cfg.Node, Seq: st.Seq(), Firmware: r.cfg.Firmware}
	h.LastSum = lastSum(st, h.Seq)
	if v, _, err := st.LatestConfig(); err == nil {
		h.ConfigVersion = v
	}
	_ = conn.SetDeadline(time.Now().Add(r.cfg.HandshakeTimeout))
	if err := writeJSON(conn, msgHello, h); err != nil {
		return false, fmt.Errorf("sending hello: %w", err)
	}
	typ, payload, err := readFrame(conn)
	if err != nil {
		// With TLS 1.3 a refused client certificate shows here.
		err = fmt.Errorf("reading the active's answer: %w", err)
		if isTLSAlert(err) {
			r.event(Event{Kind: Refused, Err: err})
		}
		return false, err
	}
	var sf start
	switch typ {
	case msgStart:
		if err := json.Unmarshal(payload, &sf); err != nil {
			return false, fmt.Errorf("decoding the active's start: %w", err)
		}
	case msgError:
		err := fmt.Errorf("the active refused us: %s", clip(payload))
		r.event(Event{Kind: Refused, Err: err})
		return false, err
	default:
		return false, fmt.Errorf("the active answered with frame type %d", typ)
	}
	if err := r.checkStart(sf); err != nil {
		_ = writeFrame(conn, msgError, []byte(err.Error()))
		r.event(Event{Kind: Refused, Peer: sf.Node, Err: err})
		return false, err
	}
	_ = conn.SetDeadline(time.Time{})
	peer := sf.Node
	r.mu.Lock()
	r.peerFirmware = sf.Firmware
	r.mu.Unlock()
	log := r.log.With("peer", peer)
	log.Info("connected to the active", "mode", sf.Mode, "seq", st.Seq(), "active_seq", sf.Seq)
	r.setLink(true, false)
	r.event(Event{Kind: Connected, Peer: peer, Seq: st.Seq()})

	w := deadlineWriter{conn: conn, d: r.cfg.IdleTimeout}
	peerSeq := sf.Seq
	if sf.Mode == modeMerge {
		// Our changes differ from the active's: it merges our store
		// into its own before it sends us the result.
		log.Warn("this store diverged from the active's; sending it to be merged", "seq", st.Seq())
		if err := st.Snapshot(snapshotWriter{w}); err != nil {
			return false, fmt.Errorf("sending our store to be merged: %w", err)
		}
		if err := writeFrame(w, msgSnapEnd, nil); err != nil {
			return false, fmt.Errorf("sending our store to be merged: %w", err)
		}
	}
	if sf.Mode == modeChanges {
		if err := writeSeq(w, msgAck, st.Seq()); err != nil {
			return false, err
		}
		r.progress(st.Seq(), peerSeq, peer)
	}
	for {
		synced = synced || r.InSync()
		_ = conn.SetReadDeadline(time.Now().Add(r.cfg.IdleTimeout))
		typ, payload, err := readFrame(conn)
		if err != nil {
			return synced, fmt.Errorf("reading from the active: %w", err)
		}
		switch typ {
		case msgChanges:
			cs, err := decodeChanges(payload)
			if err != nil {
				return synced, err
			}
			if err := st.Apply(cs); err != nil {
				err = fmt.Errorf("applying changes %d..%d: %w", cs[0].Seq, cs[len(cs)-1].Seq, err)
				_ = writeFrame(w, msgError, []byte(err.Error()))
				return synced, err
			}
			local := st.Seq()
			if err := writeSeq(w, msgAck, local); err != nil {
				return synced, err
			}
			peerSeq = max(peerSeq, cs[len(cs)-1].Seq)
			r.progress(local, peerSeq, peer)
		case msgHeartbeat:
			var hb heartbeat
			if err := json.Unmarshal(payload, &hb); err != nil {
				return synced, fmt.Errorf("decoding heartbeat: %w", err)
			}
			local := st.Seq()
			if err := writeSeq(w, msgAck, local); err != nil {
				return synced, err
			}
			peerSeq = hb.Seq
			r.progress(local, peerSeq, peer)
			if hb.Offer != nil && r.cfg.OnOffer != nil {
				r.cfg.OnOffer(*hb.Offer)
			}
		case msgSnapChunk:
			if err := r.restore(conn, w, payload, peer); err != nil {
				return synced, err
			}
			peerSeq = max(peerSeq, st.Seq())
			r.progress(st.Seq(), peerSeq, peer)
		case msgError:
			return synced, fmt.Errorf("the active gave up: %s", clip(payload))
		default:
			return synced, fmt.Errorf("reading from the active: unexpected frame type %d", typ)
		}
	}
}

func (r *Receiver) checkStart(sf start) error {
	switch {
	case sf.Proto != ProtocolVersion:
		return fmt.Errorf("the active %q speaks replication protocol %d, this box %d", sf.Node, sf.Proto, ProtocolVersion)
	case r.cfg.Peer != "" && sf.Node != r.cfg.Peer:
		return fmt.Errorf("the active calls itself %q, the twin is %q", sf.Node, r.cfg.Peer)
	case sf.Mode != modeChanges && sf.Mode != modeSnapshot && sf.Mode != modeMerge:
		return fmt.Errorf("the active asks for unknown mode %q", sf.Mode)
	}
	return nil
}

// restore reads a snapshot whose first chunk is first and replaces the
// store with it; the store stays as it was if the snapshot breaks off.
func (r *Receiver) restore(conn net.Conn, w deadlineWriter, first []byte, peer string) error {
	st := r.cfg.Store
	r.setLink(true, true)
	r.log.Info("receiving a snapshot of the active's store", "peer", peer, "seq", st.Seq())
	r.event(Event{Kind: SnapshotStarted, Peer: peer, Seq: st.Seq()})
	sr := &snapshotReader{r: conn, buf: first, onFrame: func() {
		_ = conn.SetReadDeadline(time.Now().Add(r.cfg.IdleTimeout))
	}}
	// Checking a large snapshot takes a while: keep the active from
	// timing the link out meanwhile (it ignores acks until restored).
	stop := r.keepAlive(w, st)
	err := st.RestoreSnapshot(sr)
	stop()
	if err != nil {
		if derr := sr.drain(); derr != nil {
			return errors.Join(err, derr)
		}
		err = fmt.Errorf("restoring the active's snapshot: %w", err)
		_ = writeFrame(w, msgError, []byte(err.Error()))
		return err
	}
	r.setLink(true, false)
	seq := st.Seq()
	if err := writeSeq(w, msgRestored, seq); err != nil {
		return err
	}
	r.log.Info("snapshot restored", "peer", peer, "seq", seq)
	r.event(Event{Kind: SnapshotDone, Peer: peer, Seq: seq})
	return nil
}

// keepAlive acks the local sequence every second until stop is called,
// which waits for the last ack to be written.
func (r *Receiver) keepAlive(w deadlineWriter, st *store.Store) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(min(time.Second, r.cfg.IdleTimeout/3))
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if writeSeq(w, msgAck, st.Seq()) != nil {
					return
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}

// isTLSAlert reports whether err is an alert from the TLS peer (a refused
// certificate, for one).
func isTLSAlert(err error) bool {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return true
	}
	var re *net.OpError
	if errors.As(err, &re) && re.Op == "remote error" {
		return true
	}
	return false
}
