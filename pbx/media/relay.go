// Package media is the PBX's RTP/RTCP relay. Every call's media is
// anchored here: the SDP of each leg is rewritten (package sdp) to point at
// a port pair of the relay, and the relay forwards packets between the two
// legs untouched, whatever the codec, DTMF events included.
//
// The relay learns where to send from the SDP and then latches to the
// address packets really come from (symmetric RTP), so phones behind NAT
// work. A session's state can be exported and restored on the same ports,
// so the twin that takes over after a failover carries calls on.
package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Leg names one side of a call.
type Leg int

// The two legs of a call.
const (
	A Leg = iota // the caller side
	B            // the callee side
)

func (l Leg) String() string {
	switch l {
	case A:
		return "A"
	case B:
		return "B"
	}
	return fmt.Sprintf("Leg(%d)", int(l))
}

func (l Leg) other() Leg { return 1 - l }

func (l Leg) valid() bool { return l == A || l == B }

// DefaultRelatchAfter is Config.RelatchAfter when it is zero.
const DefaultRelatchAfter = 2 * time.Second

// Config configures a Relay.
type Config struct {
	// Addr is the address the relay binds and writes into SDP: on a
	// twin pair, the virtual IP. It need not be present on the box yet
	// (net.ipv4.ip_nonlocal_bind=1). It must not be unspecified.
	Addr netip.Addr
	// PortLow and PortHigh bound the ports the relay uses, inclusive:
	// RTP on even ports, RTCP on the odd port above. A call takes two
	// pairs (one facing each leg), so the range needs at least four ports.
	PortLow, PortHigh int
	// Logger receives session events; nil discards them. Nothing is
	// logged per packet.
	Logger *slog.Logger
	// Filter decides by RTP encoding name which codecs stay in the SDP;
	// nil keeps all. telephone-event always stays.
	Filter func(encodingName string) bool
	// RelatchAfter is how long a latched source must stay silent before
	// packets carrying the same SSRC from another address take over.
	// Zero means DefaultRelatchAfter.
	RelatchAfter time.Duration
}

func (c *Config) validate() error {
	if !c.Addr.IsValid() || c.Addr.IsUnspecified() || c.Addr.IsMulticast() {
		return fmt.Errorf("media: relay address %v cannot receive media: give the box's (or the virtual) unicast IP", c.Addr)
	}
	if c.PortLow < 1 || c.PortHigh > 65535 || c.PortLow > c.PortHigh {
		return fmt.Errorf("media: port range %d-%d is not within 1-65535", c.PortLow, c.PortHigh)
	}
	if n := (c.PortHigh - (c.PortLow + c.PortLow%2) + 1) / 2; n < 2 {
		return fmt.Errorf("media: port range %d-%d holds %d RTP/RTCP pair(s); a call needs 2", c.PortLow, c.PortHigh, max(n, 0))
	}
	if c.RelatchAfter < 0 {
		return fmt.Errorf("media: negative RelatchAfter %v", c.RelatchAfter)
	}
	return nil
}

// Relay owns the port range and the media sessions. It is safe for
// concurrent use.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	alloc *allocator
	now   func() time.Time // replaced by tests of the latching rules

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// NewRelay checks cfg and returns a relay with no sessions. It binds
// nothing until a session is opened.
func NewRelay(cfg Config) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Addr = cfg.Addr.Unmap()
	if cfg.RelatchAfter == 0 {
		cfg.RelatchAfter = DefaultRelatchAfter
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{cfg: cfg, log: log, now: time.Now, sessions: map[string]*Session{}}
	r.alloc = newAllocator(cfg.PortLow, cfg.PortHigh, func(port int) (*pair, error) {
		return bindPair(cfg.Addr, port)
	})
	return r, nil
}

// ErrClosed is returned by a closed Relay.
var ErrClosed = errors.New("media: relay closed")

// Open starts a session for the call id, binding one port pair facing
// leg A and one facing leg B. Nothing is forwarded until the legs' SDP
// is known (Session.Rewrite) or packets arrive.
func (r *Relay) Open(id string) (*Session, error) {
	if err := r.reserve(id); err != nil {
		return nil, err
	}
	var socks [2]*pair
	for l := range socks {
		p, err := r.alloc.take()
		if err != nil {
			for _, q := range socks[:l] {
				q.close()
				r.alloc.release(q.port)
			}
			r.unreserve(id)
			return nil, fmt.Errorf("opening media session %q: %w", id, err)
		}
		socks[l] = p
	}
	s, err := newSession(r, id, socks)
	if err != nil {
		r.unreserve(id)
		return nil, fmt.Errorf("opening media session %q: %w", id, err)
	}
	if err := r.start(s); err != nil {
		return nil, err
	}
	r.log.Info("media session opened", "id", id, "port_a", socks[A].port, "port_b", socks[B].port)
	return s, nil
}

// Restore re-creates a session from its exported state on the same
// ports, typically on the twin after a failover, and carries on
// forwarding to the latched addresses without new SDP.
func (r *Relay) Restore(st SessionState) (*Session, error) {
	for l, ls := range st.Legs {
		if ls.Port%2 != 0 || ls.Port < r.cfg.PortLow || ls.Port+1 > r.cfg.PortHigh {
			return nil, fmt.Errorf("restoring media session %q: leg %v port %d is not an RTP port of %d-%d",
				st.ID, Leg(l), ls.Port, r.cfg.PortLow, r.cfg.PortHigh)
		}
	}
	if st.Legs[A].Port == st.Legs[B].Port {
		return nil, fmt.Errorf("restoring media session %q: both legs on port %d", st.ID, st.Legs[A].Port)
	}
	if err := r.reserve(st.ID); err != nil {
		return nil, err
	}
	var socks [2]*pair
	for l := range socks {
		p, err := r.alloc.takePort(st.Legs[l].Port)
		if err != nil {
			for _, q := range socks[:l] {
				q.close()
				r.alloc.release(q.port)
			}
			r.unreserve(st.ID)
			return nil, fmt.Errorf("restoring media session %q: %w", st.ID, err)
		}
		socks[l] = p
	}
	s, err := newSession(r, st.ID, socks)
	if err != nil {
		r.unreserve(st.ID)
		return nil, fmt.Errorf("restoring media session %q: %w", st.ID, err)
	}
	s.restore(st)
	if err := r.start(s); err != nil {
		return nil, err
	}
	r.log.Info("media session restored", "id", st.ID, "port_a", socks[A].port, "port_b", socks[B].port)
	return s, nil
}

// reserve claims id so two sessions never share it.
func (r *Relay) reserve(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, dup := r.sessions[id]; dup {
		return fmt.Errorf("media: session %q already open", id)
	}
	r.sessions[id] = nil
	return nil
}

func (r *Relay) unreserve(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, id)
}

// start publishes s and starts forwarding, unless the relay was closed
// meanwhile.
func (r *Relay) start(s *Session) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		s.Close()
		return ErrClosed
	}
	r.sessions[s.id] = s
	r.mu.Unlock()
	s.start()
	return nil
}

// forget is called by a closing session.
func (r *Relay) forget(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.sessions[s.id]; ok && (cur == s || cur == nil) {
		delete(r.sessions, s.id)
	}
}

// Sessions returns the number of open sessions.
func (r *Relay) Sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sessions {
		if s != nil {
			n++
		}
	}
	return n
}

// Close closes every session and refuses new ones. It returns when all
// forwarding goroutines have ended.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	var open []*Session
	for _, s := range r.sessions {
		if s != nil {
			open = append(open, s)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, s := range open {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
