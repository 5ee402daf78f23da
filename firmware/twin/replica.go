package twin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/replication"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// replica adapts the replication Sender and Receiver to cluster.Replica:
// the Sender accepts the twin while this box is the source (ACTIVE), the
// Receiver follows the twin otherwise. Neither runs while the box boots.
type replica struct {
	ctx    context.Context // the node's lifetime
	st     *store.Store
	sender *replication.Sender
	node   string
	// listen is where the source accepts the twin (both paths' local
	// addresses, or the wildcard).
	listen []netip.AddrPort
	// dial are the twin's replication addresses, crossover first.
	dial      []netip.AddrPort
	clientTLS *tls.Config
	log       *slog.Logger
	onEvent   func(replication.Event)
	// firmware is this box's version, named in the hello; onOffer takes
	// the bundle a rolling update offers (set before the first role).
	firmware string
	onOffer  func(replication.Offer)

	mu       sync.Mutex
	source   bool
	cancel   context.CancelFunc // of the running side
	done     chan struct{}      // closed when the running side has stopped
	receiver atomic.Pointer[replication.Receiver]

	cfgSeq atomic.Uint64 // store seq at which cfgVer was read (+1; 0: never)
	cfgVer atomic.Uint64
}

var _ cluster.Replica = (*replica)(nil)

func (r *replica) InSync() bool {
	r.mu.Lock()
	source := r.source
	r.mu.Unlock()
	if source {
		return r.sender.InSync()
	}
	if rc := r.receiver.Load(); rc != nil {
		return rc.InSync()
	}
	return false
}

func (r *replica) StoreSeq() uint64 { return r.st.Seq() }

// ConfigVersion is the newest stored config version, read again only
// when the store changed.
func (r *replica) ConfigVersion() uint64 {
	seq := r.st.Seq()
	if r.cfgSeq.Load() == seq+1 {
		return r.cfgVer.Load()
	}
	v, _, err := r.st.LatestConfig()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		r.log.Warn("reading the config version", "err", err)
		return r.cfgVer.Load()
	}
	r.cfgVer.Store(v)
	r.cfgSeq.Store(seq + 1)
	return v
}

// stopLocked ends the running side and waits for it.
func (r *replica) stopLocked() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel, r.done = nil, nil
	r.receiver.Store(nil)
}

func (r *replica) BecomeSource() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.source && r.cancel != nil {
		return
	}
	r.stopLocked()
	r.source = true
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	var lns []net.Listener
	for _, a := range r.listen {
		ln, err := net.Listen("tcp", a.String())
		if err != nil {
			r.log.Error("replication: listening for the twin", "addr", a, "err", err)
			continue
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.sender.Serve(ctx, r.st, ln); err != nil && ctx.Err() == nil {
				r.log.Error("replication: serving the twin", "addr", ln.Addr(), "err", err)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	r.log.Info("replication: this box is the source", "listen", r.listen)
}

func (r *replica) BecomeFollower(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.source && r.cancel != nil {
		return
	}
	r.stopLocked()
	r.source = false
	rc, err := replication.NewReceiver(replication.ReceiverConfig{
		Node:     r.node,
		Peer:     peer,
		Store:    r.st,
		Dial:     r.dialTwin,
		TLS:      r.clientTLS,
		OnEvent:  r.onEvent,
		Firmware: r.firmware,
		OnOffer:  r.onOffer,
		Logger:   r.log,
	})
	if err != nil {
		r.log.Error("replication: creating the receiver", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	r.receiver.Store(rc)
	go func() {
		defer close(done)
		if err := rc.Run(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("replication: following the twin", "err", err)
		}
	}()
	r.log.Info("replication: following the twin", "peer", peer, "addrs", r.dial)
}

// dialTwin tries the twin's crossover address, then its LAN address.
func (r *replica) dialTwin(ctx context.Context) (net.Conn, error) {
	var errs []error
	for _, a := range r.dial {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", a.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dialling the twin: %w", errors.Join(errs...))
}

// close stops whichever side runs.
func (r *replica) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

// lag is the follower's lag, for status.
func (r *replica) status() ReplicationStatus {
	r.mu.Lock()
	source := r.source
	r.mu.Unlock()
	s := ReplicationStatus{Source: source, Seq: r.st.Seq(), InSync: r.InSync()}
	if source {
		ss := r.sender.Status()
		s.Connected = ss.Connected
	} else if rc := r.receiver.Load(); rc != nil {
		s.Connected = true
		s.LagChanges = rc.Lag().Changes
	}
	return s
}

// ReplicationStatus is the replication link as this box sees it.
type ReplicationStatus struct {
	// Source: this box streams its store to the twin (it is active).
	Source bool `json:"source"`
	// Connected: on the source, a standby is connected; on a follower,
	// the receiver runs.
	Connected bool `json:"connected"`
	InSync    bool `json:"in_sync"`
	// Seq is the local store's sequence.
	Seq uint64 `json:"seq"`
	// LagChanges is how many changes a follower is behind.
	LagChanges uint64 `json:"lag_changes,omitempty"`
}
