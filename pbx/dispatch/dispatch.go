// Package dispatch is the dispatcher role of a twinpbx box: a SIP load
// balancer in front of several PBX boxes, with the algorithms of
// kamailio's dispatcher module (hash over Call-ID, From, To or
// Request-URI, and weighted round robin).
//
// It is a stateless proxy (RFC 3261 §16.11) with a small table of the
// requests it has forwarded: it adds its Via (a branch derived from the
// caller's, so retransmissions, CANCEL and the ACK of an error go the same
// way), decrements Max-Forwards, and Record-Routes dialog-forming requests
// with the chosen backend written into its Route entry, so every request
// of a dialog reaches the same backend, also after the dispatcher
// restarted: the dispatcher keeps no dialog state. The request table pins
// retransmissions and CANCELs to the backend of their INVITE (round robin
// would send them elsewhere), finds requests a backend never answered,
// and lets the dispatcher do what a transaction-stateful proxy does for
// an INVITE at little cost: answer 100 Trying at once and absorb the
// caller's retransmissions once the backend has answered.
//
// Backends are probed with SIP OPTIONS every probe interval; a backend
// that misses DownAfter probes in a row, or leaves a forwarded request
// unanswered for TxTimeout, is marked down and gets no new calls until it
// has answered UpAfter probes in a row. With no backend up a new call is
// refused with 503. Requests inside a dialog still go to their backend.
//
// A new call its backend leaves unanswered or refuses with 500 or 503 is
// sent on to the next backend (failover.go), and so is any other request
// of a phone outside a dialog (pending.go): for these requests alone the
// dispatcher keeps transaction state.
//
// Backends are addresses or DNS names (roster.go): a name with a port is
// one backend per address, a name without one as many as its SRV targets'
// addresses; names are
// looked up again as their TTL runs out, and a backend keeps its state
// when its address changes.
//
// Phones may also use TCP or TLS (stream.go, flow.go): each connection is
// a flow in a bounded table, and responses and requests for the phone go
// back over it; a backend's request for a phone whose connection is gone
// opens one to its Contact (dial.go). Backends are spoken to over UDP, or over TCP or TLS
// through a small pool of connections to each (pool.go); a request may
// change transport on the way, the dispatcher then Record-Routes twice.
package dispatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/pbx/rawudp"
	"github.com/twinpbx/twinpbx/pbx/sockbuf"

	"github.com/emiago/sipgo/sip"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/siplog"
)

// Defaults for the zero values of Config.
const (
	DefaultProbeInterval = 5 * time.Second
	DefaultDownAfter     = 2
	DefaultUpAfter       = 2
	DefaultTxTimeout     = 4 * time.Second
	DefaultWeight        = 1
	DefaultAttempts      = 3
)

// Backend is one PBX behind the dispatcher, or a DNS name for some.
type Backend struct {
	// Addr is where its SIP requests go (UDP).
	Addr netip.AddrPort
	// Name, instead of Addr, is a DNS name resolved with Config.Resolver
	// (RFC 3263): "host:port" or "sip:host:port" is a backend at each of
	// the host's addresses; "host", "sip:host" or "_sip._udp.host" are as
	// many backends as its SRV records name targets (each address of a
	// target host, with the target's port, one backend). The names are looked up again every
	// ResolveEvery (the resolver's cache keeps answers for their TTL): a
	// new address is taken with the backend's state kept, a failed lookup
	// keeps the last addresses.
	Name string
	// Weight is its share of new calls relative to the others (0: the
	// SRV record's weight for a name's targets, else 1).
	Weight int
	// Transport is how it is spoken to: "udp" (or ""), "tcp" or "tls".
	// A Name with a transport is looked up as "sip:name;transport=…"
	// (SRV _sip._tcp or _sips._tcp, else its address on 5060 or 5061).
	Transport string
}

// Config of a Dispatcher.
type Config struct {
	Algorithm Algorithm
	Backends  []Backend
	// Listen are the UDP addresses to serve on; the first one also sends
	// the probes.
	Listen []netip.AddrPort
	// StreamListen are the TCP and TLS listeners for phones; the
	// requests that come on them go on to the backends over UDP.
	StreamListen []StreamListener
	// MaxConns bounds the open TCP and TLS connections, MaxConnsPerSource
	// those from one IP address (0: DefaultMaxConns,
	// DefaultMaxConnsPerSource). IdleTimeout closes a connection on which
	// no message came for that long, unless it carries a registration
	// (0: DefaultIdleTimeout).
	MaxConns, MaxConnsPerSource int
	IdleTimeout                 time.Duration
	// BackendConns is how many connections are kept open to each
	// backend over TCP or TLS (0: DefaultBackendConns).
	BackendConns int
	// BackendCA are the authorities that may sign the certificates of
	// backends over TLS (nil: the system's).
	BackendCA *x509.CertPool
	// Advertise is the host written into Via and Record-Route when a
	// listener is bound to a wildcard address.
	Advertise string
	// ProbeInterval is how often every backend gets an OPTIONS; a probe
	// not answered by the next one counts as failed.
	ProbeInterval time.Duration
	// DownAfter failed probes in a row mark a backend down; UpAfter
	// answered ones mark it up again.
	DownAfter, UpAfter int
	// TxTimeout: a backend that answers a forwarded request with nothing,
	// not even 100 Trying, within this time is marked down.
	TxTimeout time.Duration
	// Attempts is how many backends a new call (an INVITE from a phone),
	// or another request of a phone outside a dialog, is tried on: when
	// its backend leaves it unanswered for TxTimeout or refuses it with
	// 500 or 503, it goes on to the next (0: 3; 1: no retry).
	Attempts int
	// Resolver resolves the backends' Names (nil: one asking the servers
	// of /etc/resolv.conf, made when a backend has a Name).
	Resolver *resolve.Resolver
	// ResolveEvery is how often the names are looked up again (0:
	// DefaultResolveEvery); answers come from the resolver's cache until
	// their TTL runs out.
	ResolveEvery time.Duration
	// Serving, when set, gates the listeners: while it returns false
	// the dispatcher passes nothing on and answers nothing (a twin pair's
	// standby, or an active whose lease lapsed), but it keeps probing the
	// backends, so its view of them is current when it starts serving.
	Serving func() bool
	// ProbeFrom, when valid, is the address the probes go out from, on a
	// socket of their own (any port), instead of the first listener: on
	// a twin pair the listeners are on the VIP, and answers to the VIP
	// reach only the box that holds it.
	ProbeFrom netip.Addr
	// Mark, when set, is called on every request from a phone (not from
	// a backend) just before it goes to a backend, with the address and
	// transport ("udp", "tcp", "tls") it came from: a twin's forwarder
	// marks it with the phone's address (firmware/twin, forward.go).
	Mark func(req *sip.Request, from netip.AddrPort, transport string)
	// Refuse, when set, is asked for every request from a phone before it
	// is passed on: a positive wait refuses it with 503 and a Retry-After
	// of that many seconds (a twin's forwarder with no active twin to
	// forward to). Requests from backends are not refused.
	Refuse func() time.Duration
	// KeepUp: no backend is ever marked down, by probes or by requests
	// left unanswered. For a twin's forwarder, whose one backend is the
	// VIP: its Refuse gate knows better whether a box serves there, and
	// a request lost during a takeover must not stop the next ones.
	KeepUp bool
	// Server, when set, is the Server header of the dispatcher's own
	// answers ("twinpbx/<node>": the twin pair's VIP probe reads it).
	Server string
	Logger *slog.Logger
}

// Dispatcher is a running dispatcher. Create it with New, start it with Run.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	netLog *slog.Logger // rate-limited, for what arrives from the network
	// roster is the backends now (roster.go); rosterMu serializes its
	// writers.
	roster   atomic.Pointer[roster]
	rosterMu sync.Mutex
	targets  []sip.Uri // Config.Backends[k].Name as the resolver takes it
	// perEntry[k] is the backends entry k brought; used by the resolving
	// goroutine only.
	perEntry []int
	// dnsFail[k] is the failing lookup of entry k (zero: it works).
	dnsMu   sync.Mutex
	dnsFail []dnsFailure
	sel     *selector
	// usableFn and pickFn are d.usable and d.pickNext, made once: a
	// method value passed on allocates each time.
	usableFn func(int) bool
	pickFn   pickFunc
	health   *health
	pend     *pending
	probes   *probes
	streams  *streamTable    // nil without stream listeners
	sent     []atomic.Uint64 // new requests sent to backend i
	// pools[i] holds backend i's connections when it is spoken to over
	// TCP or TLS (pool.go); ownHosts are the hosts the dispatcher wrote
	// into Via and Record-Route for them (its local addresses).
	pools    []atomic.Pointer[backendPool]
	ownHosts sync.Map
	// poolConns are the open pool connections' socks by their id.
	poolConns sync.Map
	// run is the context and group of Run, for the pools of backends DNS
	// brings while it runs.
	run atomic.Pointer[runState]

	mu    sync.Mutex
	socks []*sock
}

// sock is one listener with the address others reach it on.
type sock struct {
	conn  packetConn
	local netip.Addr // the address bound
	host  string     // advertised host
	port  int
	via   string // "SIP/2.0/UDP host:port" without parameters
	// transport is "TCP" or "TLS" for a stream listener ("": UDP), whose
	// connections are in streams; tlsConf is a TLS listener's.
	transport string
	streams   *streamTable
	tlsConf   *tls.Config
	// probeOnly: the probes' own socket (Config.ProbeFrom), which takes
	// only the answers to them.
	probeOnly bool
	// pool: one connection to a backend over TCP or TLS (pool.go),
	// named id.
	pool bool
	id   string
}

// runState is what the pools started while Run runs need.
type runState struct {
	ctx context.Context
	wg  *sync.WaitGroup
}

// packetConn is the part of *net.UDPConn the dispatcher uses; tests put
// fakes in.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// New checks cfg and returns a Dispatcher. It keeps a copy of
// cfg.Backends: the caller's slice is not changed.
func New(cfg Config) (*Dispatcher, error) {
	cfg.Backends = slices.Clone(cfg.Backends)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, ok := algNames[cfg.Algorithm]; !ok {
		return nil, fmt.Errorf("dispatcher: unknown algorithm %d", int(cfg.Algorithm))
	}
	if len(cfg.Backends) == 0 {
		return nil, errors.New("dispatcher: no backends")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dispatcher: no listener")
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = DefaultDownAfter
	}
	if cfg.UpAfter <= 0 {
		cfg.UpAfter = DefaultUpAfter
	}
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = DefaultTxTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.ResolveEvery <= 0 {
		cfg.ResolveEvery = DefaultResolveEvery
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerSource <= 0 {
		cfg.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.BackendConns <= 0 {
		cfg.BackendConns = DefaultBackendConns
	}
	d := &Dispatcher{
		cfg:      cfg,
		log:      cfg.Logger,
		netLog:   slog.New(siplog.New(cfg.Logger.Handler(), siplog.Options{})),
		targets:  make([]sip.Uri, len(cfg.Backends)),
		dnsFail:  make([]dnsFailure, len(cfg.Backends)),
		perEntry: make([]int, len(cfg.Backends)),
	}
	r := &roster{byAddr: map[netip.AddrPort]int{}, byTag: map[string]int{}, byName: map[string]int{}}
	capacity, names := 0, false
	for i, b := range cfg.Backends {
		if b.Weight < 0 {
			return nil, fmt.Errorf("dispatcher: backend %d has a negative weight", i)
		}
		b.Transport = strings.ToLower(b.Transport)
		switch b.Transport {
		case "":
			b.Transport = "udp"
		case "udp", "tcp", "tls":
		default:
			return nil, fmt.Errorf("dispatcher: backend %d: transport %q (want udp, tcp or tls)", i, b.Transport)
		}
		cfg.Backends[i] = b
		if b.Name != "" {
			if b.Addr.IsValid() {
				return nil, fmt.Errorf("dispatcher: backend %d has both an address and a name", i)
			}
			u, err := nameTarget(b.Name, b.Transport)
			if err != nil {
				return nil, fmt.Errorf("dispatcher: %w", err)
			}
			d.targets[i] = u
			names = true
			// Each of its targets' addresses is a backend.
			capacity += maxPerName
			continue
		}
		if !b.Addr.IsValid() || b.Addr.Port() == 0 {
			return nil, fmt.Errorf("dispatcher: backend %d has no address and port", i)
		}
		b.Addr = netip.AddrPortFrom(b.Addr.Addr().Unmap(), b.Addr.Port())
		if _, dup := r.byAddr[b.Addr]; dup {
			return nil, fmt.Errorf("dispatcher: backend %s is listed twice", b.Addr)
		}
		if b.Weight == 0 {
			b.Weight = DefaultWeight
		}
		cfg.Backends[i] = b
		d.perEntry[i] = 1
		capacity++
		r.add(b.Addr.String(), b.Weight, 0, b.Addr, i)
		r.trans[len(r.trans)-1] = b.Transport
	}
	d.cfg = cfg
	if names && cfg.Resolver == nil {
		res, err := resolve.New(resolve.Config{Transports: []string{resolve.UDP, resolve.TCP, resolve.TLS}, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("dispatcher: backends by name need DNS: %w", err)
		}
		d.cfg.Resolver = res
	}
	d.roster.Store(r)
	d.usableFn, d.pickFn = d.usable, d.pickNext
	d.sent = make([]atomic.Uint64, capacity)
	d.pools = make([]atomic.Pointer[backendPool], capacity)
	for i, tr := range r.trans {
		if streamTransport(tr) {
			d.pools[i].Store(d.newPool(i, tr))
		}
	}
	d.sel = newSelector(cfg.Algorithm, r.names, r.weights, capacity)
	d.health = newHealth(cfg.Logger, capacity, d.name, cfg.DownAfter, cfg.UpAfter)
	d.health.keepUp = cfg.KeepUp
	d.pend = newPending()
	d.pend.server = cfg.Server
	d.probes = newProbes(capacity)
	if len(cfg.StreamListen) > 0 {
		d.streams = newStreamTable(cfg.MaxConns, cfg.MaxConnsPerSource, cfg.IdleTimeout)
	}
	return d, nil
}

// name is backend i's identity (its address, or host:port of a name).
func (d *Dispatcher) name(i int) string {
	r := d.roster.Load()
	if i < 0 || i >= len(r.names) {
		return ""
	}
	return r.names[i]
}

// addr is where backend i's requests go now.
func (d *Dispatcher) addr(i int) netip.AddrPort { return d.roster.Load().addrs[i] }

// usable tells whether backend i may get a new request: up, listed, and
// over TCP or TLS with a connection open.
func (d *Dispatcher) usable(i int) bool {
	if !d.health.isUp(i) || !d.roster.Load().listed[i] {
		return false
	}
	p := d.pool(i)
	return p == nil || p.sock("") != nil
}

// backendTag names a backend in Record-Route: a short hash of its address,
// so the Route stays valid across restarts and reordered configs, and
// tells nothing about the network behind the dispatcher.
func backendTag(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// Run binds the listeners and serves until ctx ends. ready, if not nil,
// gets the bound addresses once the dispatcher serves: the UDP ones as
// "ip:port", then the stream ones as "tcp:ip:port" or "tls:ip:port".
func (d *Dispatcher) Run(ctx context.Context, ready func(addrs []string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var socks []*sock
	defer func() {
		for _, s := range socks {
			_ = s.conn.Close()
		}
	}()
	for _, l := range d.cfg.Listen {
		s, err := d.listen(l)
		if err != nil {
			return err
		}
		socks = append(socks, s)
	}
	for _, l := range d.cfg.StreamListen {
		s, err := d.listenStream(l)
		if err != nil {
			return err
		}
		socks = append(socks, s)
	}
	probeSock := socks[0]
	if d.cfg.ProbeFrom.IsValid() {
		s, err := d.listen(netip.AddrPortFrom(d.cfg.ProbeFrom, 0))
		if err != nil {
			return fmt.Errorf("opening the probe socket: %w", err)
		}
		s.probeOnly = true
		probeSock = s
		// Closed with the listeners, not listed with them.
		defer func() { _ = s.conn.Close() }()
	}
	d.mu.Lock()
	d.socks = socks
	d.mu.Unlock()

	var wg sync.WaitGroup
	d.run.Store(&runState{ctx: ctx, wg: &wg})
	for i := range d.pools {
		if p := d.pools[i].Load(); p != nil {
			p.start(ctx, &wg)
		}
	}
	all := socks
	if probeSock.probeOnly {
		all = append(all[:len(all):len(all)], probeSock)
	}
	errc := make(chan error, len(all))
	for _, s := range all {
		wg.Go(func() {
			serve := d.serve
			if s.streams != nil {
				serve = func(s *sock) error { return d.serveStream(ctx, s) }
			}
			if err := serve(s); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		})
	}
	wg.Go(func() { d.probeLoop(ctx, probeSock) })
	wg.Go(func() { d.sweepLoop(ctx) })
	if d.cfg.Resolver != nil {
		wg.Go(func() { d.resolveLoop(ctx) })
	}
	if ready != nil {
		addrs := make([]string, len(socks))
		for i, s := range socks {
			addrs[i] = s.conn.LocalAddr().String()
			if s.streams != nil {
				addrs[i] = strings.ToLower(s.transport) + ":" + addrs[i]
			}
		}
		ready(addrs)
	}
	d.log.Info("dispatcher serving", "algorithm", d.cfg.Algorithm.String(), "backends", d.roster.Load().names)
	<-ctx.Done()
	for _, s := range all {
		_ = s.conn.Close()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// listen binds one UDP socket at l and works out the address others
// reach it on.
func (d *Dispatcher) listen(l netip.AddrPort) (*sock, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l))
	if err != nil {
		return nil, fmt.Errorf("dispatcher listening on udp:%s: %w", l, err)
	}
	sockbuf.Set(conn, sockbuf.SIP)
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	host, err := d.advertised(la)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("dispatcher listening on udp:%s: %w", l, err)
	}
	// Raw reads and writes (pbx/rawudp): a dispatcher idling between
	// packets does not wake Go's monitor thread for each one.
	var pc packetConn = conn
	if raw, err := rawudp.New(conn); err == nil {
		pc = raw
	} else {
		d.log.Warn("UDP socket without raw access: plain reads and writes", "addr", l, "err", err)
	}
	s := &sock{conn: pc, local: la.Addr().Unmap(), host: host, port: int(la.Port())}
	s.via = "SIP/2.0/UDP " + s.host + ":" + strconv.Itoa(s.port)
	return s, nil
}

// advertised is the host others reach a listener bound at la on.
func (d *Dispatcher) advertised(la netip.AddrPort) (string, error) {
	host := la.Addr().Unmap().String()
	if la.Addr().IsUnspecified() {
		host = d.cfg.Advertise
		if host == "" {
			return "", errors.New("a wildcard address needs an advertised host")
		}
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	return host, nil
}

// serving tells whether the gate (Config.Serving) lets requests through.
func (d *Dispatcher) serving() bool { return d.cfg.Serving == nil || d.cfg.Serving() }

// datagram is one read from a socket, for a worker.
type datagram struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

const maxDatagram = 65535

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// serve reads s and hands each datagram to one of GOMAXPROCS workers,
// chosen by the sender's address: the datagrams of one sender (an ACK and
// the re-INVITE right behind it) are handled in the order they came, as
// a UAS in front of which the dispatcher sits expects.
func (d *Dispatcher) serve(s *sock) error {
	n := runtime.GOMAXPROCS(0)
	work := make([]chan datagram, n)
	var wg sync.WaitGroup
	for i := range work {
		work[i] = make(chan datagram, 256)
		wg.Go(func() {
			parser := sip.NewParser()
			for dg := range work[i] {
				d.handle(s, parser, (*dg.buf)[:dg.n], dg.from)
				bufPool.Put(dg.buf)
			}
		})
	}
	defer func() {
		for _, w := range work {
			close(w)
		}
		wg.Wait()
	}()
	for {
		buf := bufPool.Get().(*[]byte)
		m, from, err := s.conn.ReadFromUDPAddrPort(*buf)
		if err != nil {
			bufPool.Put(buf)
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dispatcher reading from %s: %w", s.conn.LocalAddr(), err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		work[workerOf(from, n)] <- datagram{buf, m, from}
	}
}

func workerOf(a netip.AddrPort, n int) int {
	b := a.Addr().As16()
	h := uint32(a.Port())
	for _, x := range b[12:] {
		h = h*31 + uint32(x)
	}
	return int(h % uint32(n))
}

// BackendStatus is what Status tells about one backend.
type BackendStatus struct {
	Addr string `json:"addr"`
	// Name is host:port of a backend found by DNS, Priority its SRV
	// priority.
	Name     string `json:"name,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Weight   int    `json:"weight"`
	Up       bool   `json:"up"`
	// Transport is "tcp" or "tls" for a backend spoken to over one
	// (absent: udp), Connections how many of its connections are open.
	Transport   string `json:"transport,omitempty"`
	Connections *int   `json:"connections,omitempty"`
	// Sent counts the requests outside a dialog sent to it.
	Sent uint64 `json:"sent"`
}

// Status is a snapshot of the dispatcher for `twinpbx status` and tests.
type Status struct {
	Algorithm string          `json:"algorithm"`
	Backends  []BackendStatus `json:"backends"`
	// Alarms say what needs a person's attention: backend names that do
	// not resolve. Empty when healthy.
	Alarms []string `json:"alarms,omitempty"`
	// Connections are the phones' TCP and TLS connections open now,
	// Registered the Contacts registered over them, ConnectionsRefused
	// those closed at once since the start because a limit was reached.
	// Absent without a tcp or tls listener.
	Connections        *int   `json:"connections,omitempty"`
	Registered         int    `json:"registered_over_connections,omitempty"`
	ConnectionsRefused uint64 `json:"connections_refused,omitempty"`
}

// Status returns the backends' state.
func (d *Dispatcher) Status() Status {
	st := Status{Algorithm: d.cfg.Algorithm.String()}
	if t := d.streams; t != nil {
		t.mu.Lock()
		n := len(t.byAddr)
		st.Connections, st.Registered = &n, len(t.aliases)
		t.mu.Unlock()
		st.ConnectionsRefused = t.refusals.Load()
	}
	r := d.roster.Load()
	for i, n := range r.names {
		if !r.listed[i] {
			continue
		}
		bs := BackendStatus{Addr: r.addrs[i].String(), Weight: r.weights[i], Priority: r.prios[i], Up: d.health.isUp(i), Sent: d.sent[i].Load()}
		if d.cfg.Backends[r.entry[i]].Name != "" {
			bs.Name = n
		}
		if p := d.pool(i); p != nil {
			open := p.open()
			bs.Transport, bs.Connections = r.trans[i], &open
		}
		st.Backends = append(st.Backends, bs)
	}
	d.dnsMu.Lock()
	defer d.dnsMu.Unlock()
	for k, f := range d.dnsFail {
		if f.err != "" {
			st.Alarms = append(st.Alarms, fmt.Sprintf("backend name %s does not resolve since %s (%s): its last addresses are kept",
				d.cfg.Backends[k].Name, f.since.UTC().Format(time.RFC3339), f.err))
		}
	}
	return st
}
