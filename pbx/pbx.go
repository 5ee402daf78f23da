// Package pbx assembles the SIP PBX of one box: listeners, registrar,
// digest authentication, the B2BUA with its media relay, and the CDR sink,
// all driven by the config. The appliance (firmware) creates one PBX and
// runs it; the cluster later decides when.
package pbx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
	"github.com/twinpbx/twinpbx/pbx/rawudp"
	"github.com/twinpbx/twinpbx/pbx/registrar"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/siplog"
	"github.com/twinpbx/twinpbx/pbx/sipmark"
	"github.com/twinpbx/twinpbx/pbx/sockbuf"
	"github.com/twinpbx/twinpbx/pbx/trunk"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// Store is what the PBX keeps durably: location bindings and CDRs.
type Store interface {
	location.Persister
	AppendCDR(cdr.Record) error
}

// Options configure a PBX.
type Options struct {
	// Config must be valid; defaults are applied by New.
	Config *config.Config
	Store  Store
	// AuthKey signs digest nonces (32 random bytes kept in the store, so
	// nonces survive a restart).
	AuthKey []byte
	Logger  *slog.Logger
	// Serving, when set, is asked before every request is handled: while
	// it returns false the PBX answers nothing and expires no bindings
	// (a twin's standby, or an active whose lease ran out). It must be
	// cheap. Nil: always serving.
	Serving func() bool
	// Resolver finds the trunks' SIP servers (RFC 3263). Nil: one asking
	// the DNS servers of node.network.dns, else of /etc/resolv.conf.
	Resolver *resolve.Resolver
	// Site forwards calls to and from the other boxes of a site cluster
	// (b2bua.Site); nil: no site.
	Site b2bua.Site
	// Forwarded, when set, checks the mark of requests a twin's forwarder
	// passed on from a box's own address (firmware/twin): a valid mark's
	// claim is the phone's own address, which the registrar records; a
	// request whose mark does not verify is refused with 403. Nil: marks
	// are not looked at.
	Forwarded *sipmark.Marker
	// SpanChannels are the B channels of the board's ISDN spans, in the
	// board's order (0: type not known): an isdn trunk whose config gives
	// no channels gets its span's (config.TrunksAndRoutesOn). Nil: every
	// such trunk gets console.trunk's line's, else a BRI's.
	SpanChannels []int

	// sipgoRegister: every REGISTER is parsed by sipgo, none read by
	// regwire (tests that compare the two).
	sipgoRegister bool
}

// Listener is one SIP socket the PBX serves.
type Listener struct {
	Transport string `json:"transport"`
	Addr      string `json:"addr"`
}

// PBX is one running SIP PBX. Create it with New, start it with Run.
type PBX struct {
	log   *slog.Logger
	cfg   atomic.Pointer[config.Config]
	exts  atomic.Pointer[map[string]config.Extension] // cfg's extensions by number
	store Store
	// spans are the board's ISDN spans' B channels (Options.SpanChannels).
	spans []int

	loc   *location.Service
	relay *media.Relay
	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	auth  *auth.Digest
	reg   *registrar.Registrar
	calls *b2bua.B2BUA
	vm    *voicemail.Service
	// trunks are the SIP trunks of the config the PBX started with;
	// plan is the dial plan in force; tr their work while serving.
	trunks *trunk.Manager
	plan   atomic.Pointer[dialplan.Plan]
	res    *resolve.Resolver
	tls    *tlsSetup
	// phoneTLS opens TLS connections to phones whose own is gone; nil
	// without a tls listener.
	phoneTLS *phoneTLS
	trMu     sync.Mutex
	tr       *trunkRun

	serving func() bool
	// workers run request handlers; fastRegister is the guarded
	// registrar for REGISTERs taken off UDP sockets before sipgo
	// (registerConn).
	workers      *workers
	fastRegister func(*sip.Request, sip.ServerTransaction)
	// wire answers plain REGISTERs read by regwire; nil: every one is
	// parsed by sipgo.
	wire      *wireRegistrar
	host      string // advertised host
	bad       *badRequests
	listeners []listenSpec

	mu     sync.Mutex
	bound  []Listener
	closed bool
}

type listenSpec struct {
	transport string
	addr      netip.AddrPort
}

// New builds the PBX from the config. Nothing listens until Run.
func New(o Options) (*PBX, error) {
	if o.Config == nil || o.Store == nil {
		return nil, errors.New("pbx: config and store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg := o.Config.WithDefaults()
	p := &PBX{log: o.Logger, store: o.Store, serving: o.Serving, spans: slices.Clone(o.SpanChannels)}
	p.exts.Store(extensionIndex(cfg))
	p.cfg.Store(cfg)

	for _, l := range cfg.SIP.Listen {
		spec, err := parseListen(l)
		if err != nil {
			return nil, err
		}
		p.listeners = append(p.listeners, spec)
	}
	if len(p.listeners) == 0 {
		return nil, errors.New("pbx: no SIP listener configured")
	}
	p.host = cfg.SIP.Advertise
	if p.host == "" {
		if p.listeners[0].addr.Addr().IsUnspecified() {
			return nil, fmt.Errorf("pbx: sip.advertise must name this box's address when sip.listen uses the wildcard %s", p.listeners[0].addr.Addr())
		}
		p.host = p.listeners[0].addr.Addr().String()
	}
	mediaAddr, err := netip.ParseAddr(p.host)
	if err != nil {
		return nil, fmt.Errorf("pbx: the advertised address %q must be an IP address for the media relay: %w", p.host, err)
	}
	lo, hi, err := config.ParsePortRange(cfg.SIP.RTPPorts)
	if err != nil {
		return nil, fmt.Errorf("pbx: sip.rtp_ports: %w", err)
	}

	p.loc, err = location.New(o.Store, nil)
	if err != nil {
		return nil, err
	}
	p.loc.SetWriteBack(writeBack(cfg))
	p.relay, err = media.NewRelay(media.Config{
		Addr: mediaAddr, PortLow: lo, PortHigh: hi,
		Logger: o.Logger.With("component", "media"),
		Filter: codecFilter(cfg.SIP.Codecs),
	})
	if err != nil {
		return nil, fmt.Errorf("pbx: starting the media relay: %w", err)
	}

	// The SIP stack logs whole packets at ERROR on parse failures: a
	// scanner must not fill the disk, so its log is rate-limited.
	p.bad = newBadRequests(siplog.New(o.Logger.Handler(), siplog.Options{}), o.Serving)
	sipLog := slog.New(p.bad).With("component", "sip")
	setSIPLogger(sipLog)
	if p.tls, err = newTLS(cfg, o.AuthKey, o.Logger); err != nil {
		return nil, err
	}
	p.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("twinpbx"),
		sipgo.WithUserAgentHostname(p.host),
		sipgo.WithUserAgenTLSConfig(p.tls.clientConfig()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
	)
	if err != nil {
		return nil, fmt.Errorf("pbx: creating the SIP user agent: %w", err)
	}
	p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, fmt.Errorf("pbx: creating the SIP server: %w", err)
	}
	client, err := sipgo.NewClient(p.ua, sipgo.WithClientHostname(p.host), sipgo.WithClientLogger(sipLog))
	if err != nil {
		return nil, fmt.Errorf("pbx: creating the SIP client: %w", err)
	}

	fwd := newForwarded(o.Forwarded, o.Logger.With("component", "forwarded"))
	var origin func(*sip.Request) string
	if fwd != nil {
		origin = fwd.origin
	}
	p.auth, err = auth.New(auth.Options{
		Origin:        origin,
		Realm:         cfg.SIP.Realm,
		Key:           o.AuthKey,
		NonceLifetime: cfg.SIP.NonceLifetime.D(),
		Secrets:       p.secret,
		Algorithms:    cfg.SIP.DigestAlgorithms,
		Logger:        o.Logger.With("component", "auth"),
	})
	if err != nil {
		return nil, fmt.Errorf("pbx: digest authentication: %w", err)
	}
	p.reg, err = registrar.New(registrar.Options{
		Location:       p.loc,
		Auth:           p.auth,
		Directory:      p,
		MinExpires:     cfg.SIP.MinExpires.D(),
		MaxExpires:     cfg.SIP.MaxExpires.D(),
		DefaultExpires: cfg.SIP.DefaultExpires.D(),
		Origin:         origin,
		Logger:         o.Logger.With("component", "registrar"),
	})
	if err != nil {
		return nil, fmt.Errorf("pbx: registrar: %w", err)
	}
	plan, err := dialplan.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("pbx: dial plan: %w", err)
	}
	p.plan.Store(plan)
	p.res = o.Resolver
	if p.res == nil {
		var servers []string
		if n := cfg.Node.Network; n != nil {
			servers = n.DNS
		}
		p.res, err = resolve.New(resolve.Config{Servers: servers, Transports: p.tls.resolverTransports(), Logger: o.Logger.With("component", "resolve")})
		if err != nil {
			// A box without DNS (no resolv.conf, as in the image) still
			// runs; trunks named by address need no DNS, the others fail
			// their lookups with this in the log.
			o.Logger.Warn("no DNS server known: trunks named by a domain will not resolve", "err", err)
			p.res, err = resolve.New(resolve.Config{Servers: []string{"127.0.0.1:53"}, Transports: p.tls.resolverTransports(), Logger: o.Logger.With("component", "resolve")})
			if err != nil {
				return nil, fmt.Errorf("pbx: DNS resolver: %w", err)
			}
		}
	}
	lines, _ := cfg.TrunksAndRoutesOn(p.spans)
	p.trunks, err = trunk.New(trunk.Options{
		Client: client, Resolver: p.res, Contact: p.contact, TLS: p.tls.peers,
		Prepare: func(req *sip.Request) { p.calls.Prepare(req) },
		Logger:  o.Logger.With("component", "trunk"),
	}, lines)
	if err != nil {
		return nil, fmt.Errorf("pbx: trunks: %w", err)
	}
	var connectTLS func(context.Context, netip.AddrPort) error
	if cfg.HasTLS() {
		p.phoneTLS = newPhoneTLS(p.ua.TransportLayer(), p.tls.peers, o.Logger.With("component", "tls"))
		connectTLS = p.phoneTLS.connect
	}
	// Calls and the mailbox reach phones whose TCP or TLS connection is
	// gone the same way.
	flow := &phoneflow.Redirector{Client: client, Contact: p.contact, ConnectTLS: connectTLS, Logger: o.Logger.With("component", "phoneflow")}
	if p.vm, err = p.newVoicemail(o, client, mediaAddr, flow.Redirect); err != nil {
		return nil, err
	}
	p.calls, err = b2bua.New(b2bua.Options{
		Client:      client,
		Locator:     p.loc,
		Directory:   p,
		Auth:        p.auth,
		Media:       relayAdapter{p.relay},
		CDR:         cdrSink{o.Store},
		RingTimeout: cfg.SIP.RingTimeout.D(),
		Contact:     p.contact,
		Logger:      o.Logger.With("component", "b2bua"),
		Calls:       callStore(o.Store),
		Dialplan:    p.plan.Load,
		Trunks:      p.trunks,
		Site:        o.Site,
		Voicemail:   p.vm,
		Flow:        flow,
		Forwarder:   twinForwarder(cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("pbx: call handling: %w", err)
	}
	p.workers = newWorkers(64)
	r := guardedRouter{srv: p.srv, serving: o.Serving, workers: p.workers, fwd: fwd}
	r.OnRequest(sip.REGISTER, p.serveRegister)
	p.fastRegister = guard(p.serveRegister, o.Serving, fwd)
	if !o.sipgoRegister {
		p.wire = &wireRegistrar{serving: o.Serving, auth: p.auth, register: p.reg.ServeWire,
			registered: p.vm.RegisteredBy, log: o.Logger.With("component", "registrar")}
		if fwd != nil {
			// Marked requests are checked by the guard only.
			p.wire.parser.Refuse = []string{strings.ToLower(fwd.m.Header())}
		}
	}
	r.OnRequest(sip.OPTIONS, p.serveOptions)
	r.OnRequest(sip.SUBSCRIBE, p.vm.ServeSubscribe)
	p.calls.Register(p.vm.Wrap(r))
	return p, nil
}

func parseListen(s string) (listenSpec, error) {
	l, err := config.ParseListen(s)
	if err != nil {
		return listenSpec{}, fmt.Errorf("pbx: sip.listen %q: %w", s, err)
	}
	ip, err := netip.ParseAddr(l.Host)
	if err != nil {
		return listenSpec{}, fmt.Errorf("pbx: sip.listen %q: the SIP listener needs an IP address, not a name", s)
	}
	return listenSpec{transport: l.Transport, addr: netip.AddrPortFrom(ip, uint16(l.Port))}, nil
}

func codecFilter(names []string) func(string) bool {
	if len(names) == 0 {
		return nil
	}
	allowed := map[string]bool{"TELEPHONE-EVENT": true}
	for _, n := range names {
		allowed[strings.ToUpper(n)] = true
	}
	return func(name string) bool { return allowed[strings.ToUpper(name)] }
}

// Extension implements the registrar's and the B2BUA's directory over the
// current config.
func (p *PBX) Extension(number string) (config.Extension, bool) {
	e, ok := (*p.exts.Load())[number]
	return e, ok
}

// extensionIndex maps the config's extensions by number, built once per
// config rather than searched on every request. Should a number appear
// twice, the first one counts.
func extensionIndex(cfg *config.Config) *map[string]config.Extension {
	m := make(map[string]config.Extension, len(cfg.Extensions))
	for _, e := range cfg.Extensions {
		if _, dup := m[e.Number]; !dup {
			m[e.Number] = e
		}
	}
	return &m
}

func (p *PBX) secret(user string) (string, bool) {
	e, ok := p.Extension(user)
	return e.Secret, ok
}

// SetConfig applies a new config to the running PBX. Extensions, secrets
// and call settings take effect at once; listeners and the RTP range need
// a restart, which the returned flag says.
func (p *PBX) SetConfig(cfg *config.Config) (restart bool) {
	c := cfg.WithDefaults()
	p.exts.Store(extensionIndex(c))
	if plan, err := dialplan.FromConfig(c); err != nil {
		p.log.Error("dial plan of the new config; keeping the old one", "err", err)
	} else {
		p.plan.Store(plan)
	}
	p.loc.SetWriteBack(writeBack(c))
	old := p.cfg.Swap(c)
	oldTrunks, _ := old.TrunksAndRoutesOn(p.spans)
	newTrunks, _ := c.TrunksAndRoutesOn(p.spans)
	return strings.Join(old.SIP.Listen, ",") != strings.Join(c.SIP.Listen, ",") ||
		old.SIP.RTPPorts != c.SIP.RTPPorts || old.SIP.Advertise != c.SIP.Advertise ||
		!reflect.DeepEqual(oldTrunks, newTrunks) || tlsChanged(old, c)
}

// Reload makes the PBX current with its store before it starts serving on
// a twin that takes over: cfg (when not nil) replaces the config as
// SetConfig does, and the location table is read again, so bindings that
// arrived by replication are found.
func (p *PBX) Reload(cfg *config.Config) error {
	if cfg != nil {
		p.SetConfig(cfg)
	}
	if err := p.loc.Reload(); err != nil {
		return fmt.Errorf("reloading the location table: %w", err)
	}
	return nil
}

func (p *PBX) contact(transport string) sip.Uri {
	tr := strings.ToLower(transport)
	for _, l := range p.listeners {
		if l.transport == tr {
			u := sip.Uri{Scheme: "sip", User: "twinpbx", Host: p.host, Port: int(l.addr.Port())}
			// TLS is said with transport=tls, which RFC 5630 deprecates
			// in favour of sips:, because phones in the field (baresip 1.0
			// among them) cannot route in-dialog requests to a sips: Contact.
			if tr != "udp" {
				u.UriParams = sip.NewParams()
				u.UriParams.Add("transport", tr)
			}
			return u
		}
	}
	return sip.Uri{Scheme: "sip", User: "twinpbx", Host: p.host, Port: int(p.listeners[0].addr.Port())}
}

func (p *PBX) serveOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, REFER, NOTIFY, INFO, UPDATE, MESSAGE"))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	// The node's name tells the twin's probes and the test bed which box
	// answered on the VIP.
	res.AppendHeader(sip.NewHeader("Server", "twinpbx/"+p.cfg.Load().Node.Name))
	if err := tx.Respond(res); err != nil {
		p.log.Debug("answering OPTIONS", "err", err)
	}
}

// Run listens on every configured socket and serves until ctx ends; then
// it hangs up every call (writing their CDRs) and closes the sockets.
// ready, if not nil, is called once every listener is bound.
func (p *PBX) Run(ctx context.Context, ready func([]Listener)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	errc := make(chan error, len(p.listeners))
	var bound []Listener
	for _, l := range p.listeners {
		switch l.transport {
		case "udp":
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.addr))
			if err != nil {
				return fmt.Errorf("listening on udp:%s: %w", l.addr, err)
			}
			// sipgo never enlarges socket buffers; bursts of REGISTERs
			// would be dropped by the kernel otherwise.
			sockbuf.Set(conn, sockbuf.SIP)
			closers = append(closers, conn.Close)
			bound = append(bound, Listener{"udp", conn.LocalAddr().String()})
			var pc net.PacketConn = conn
			if raw, err := rawudp.New(conn); err == nil {
				pc = raw
			} else {
				p.log.Warn("UDP socket without raw access: plain reads and writes", "addr", l.addr, "err", err)
			}
			rc := &recordingConn{PacketConn: pc}
			p.bad.add(rc)
			fc := newRegisterConn(rc, p.fastRegister, p.wire, p.workers)
			go func() { errc <- p.srv.ServeUDP(fc) }()
		case "tcp":
			ln, err := net.Listen("tcp", l.addr.String())
			if err != nil {
				return fmt.Errorf("listening on tcp:%s: %w", l.addr, err)
			}
			closers = append(closers, ln.Close)
			bound = append(bound, Listener{"tcp", ln.Addr().String()})
			go func() { errc <- p.srv.ServeTCP(ln) }()
		case "tls":
			ln, err := p.tls.listenTLS(l.addr)
			if err != nil {
				return err
			}
			closers = append(closers, ln.Close)
			bound = append(bound, Listener{"tls", ln.Addr().String()})
			go func() { errc <- p.srv.ServeTLS(ln) }()
			if p.phoneTLS != nil {
				stop := p.phoneTLS.start(ln.Addr())
				closers = append(closers, func() error { stop(); return nil })
			}
		}
	}
	p.mu.Lock()
	p.bound = bound
	p.mu.Unlock()
	if ready != nil {
		ready(bound)
	}

	expire := time.NewTicker(10 * time.Second)
	defer expire.Stop()
	p.followServing()
	defer p.stopTrunks()
	trunkCheck := time.NewTicker(time.Second)
	defer trunkCheck.Stop()
	flush := time.NewTicker(refreshFlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-trunkCheck.C:
			p.followServing()
		case <-flush.C:
			p.flushRefreshes(false)
		case <-ctx.Done():
			return p.shutdown()
		case err := <-errc:
			if ctx.Err() != nil {
				return p.shutdown()
			}
			_ = p.shutdown()
			return fmt.Errorf("a SIP listener stopped: %w", err)
		case <-expire.C:
			if p.serving != nil && !p.serving() {
				continue // the twin that serves expires them
			}
			if n, err := p.loc.Expire(); err != nil {
				p.log.Error("expiring registrations", "err", err)
			} else if n > 0 {
				p.log.Info("registrations expired", "count", n)
			}
		}
	}
}

// How registration refreshes are written (location.WriteBack): within a
// second of the stored copy's half-life, and while it stays valid at least
// a minute longer.
const (
	refreshFlushInterval = time.Second
	refreshHeadroom      = time.Minute
)

func writeBack(c *config.Config) location.WriteBack {
	if c.SIP.SyncRefreshes {
		return location.WriteBack{}
	}
	return location.WriteBack{Interval: refreshFlushInterval, Headroom: refreshHeadroom}
}

// flushRefreshes writes the registration refreshes that are due (all of
// them when stopping), while this box serves; a box that does not serve
// (a twin's standby) drops them: the serving twin's store holds the
// bindings.
func (p *PBX) flushRefreshes(all bool) {
	if p.serving != nil && !p.serving() {
		if n := p.loc.Discard(); n > 0 {
			p.log.Info("registration refreshes left to the twin", "count", n)
		}
		return
	}
	flush := p.loc.FlushDue
	if all {
		flush = p.loc.Flush
	}
	if err := flush(); err != nil {
		p.log.Error("writing registration refreshes", "err", err)
	}
}

func (p *PBX) shutdown() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.stopTrunks()
	if p.serving == nil || p.serving() {
		p.flushRefreshes(true)
	}
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.calls.HangupAll(hctx)
	p.vm.Close(hctx)
	var errs []error
	if err := p.relay.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the media relay: %w", err))
	}
	if err := p.ua.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the SIP stack: %w", err))
	}
	return errors.Join(errs...)
}

// trunkRun is the trunks' registration and probing while this box serves.
type trunkRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// followServing starts the trunks' work (registrations at the providers,
// probes of dead targets) when this box serves and stops it when it no
// longer does: only the serving twin registers.
func (p *PBX) followServing() {
	serving := p.serving == nil || p.serving()
	p.trMu.Lock()
	running := p.tr != nil
	p.trMu.Unlock()
	switch {
	case serving && !running:
		ctx, cancel := context.WithCancel(context.Background())
		r := &trunkRun{cancel: cancel, done: make(chan struct{})}
		p.trMu.Lock()
		p.tr = r
		p.trMu.Unlock()
		go func() {
			defer close(r.done)
			p.trunks.Run(ctx)
		}()
	case !serving && running:
		p.stopTrunks()
	}
}

// stopTrunks ends the trunks' work and waits until the registrations are
// removed.
func (p *PBX) stopTrunks() {
	p.trMu.Lock()
	r := p.tr
	p.tr = nil
	p.trMu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// Status is a snapshot for `twinpbx status` and the console.
type Status struct {
	Node          string             `json:"node"`
	Listeners     []Listener         `json:"listeners"`
	Registrations []location.Binding `json:"registrations"`
	Calls         []b2bua.CallInfo   `json:"calls"`
	MediaSessions int                `json:"media_sessions"`
	Trunks        []trunk.Status     `json:"trunks,omitempty"`
	TLS           *TLSStatus         `json:"tls,omitempty"`
	Process       Process            `json:"process"`
}

// Status reports listeners, registrations and calls.
func (p *PBX) Status() Status {
	p.mu.Lock()
	bound := append([]Listener(nil), p.bound...)
	p.mu.Unlock()
	return Status{
		Node:          p.cfg.Load().Node.Name,
		Listeners:     bound,
		Registrations: p.loc.All(),
		Calls:         p.calls.Calls(),
		MediaSessions: p.relay.Sessions(),
		Trunks:        p.trunks.Status(),
		TLS:           p.tls.status(),
		Process:       readProcess(),
	}
}

type relayAdapter struct{ r *media.Relay }

func (a relayAdapter) Open(id string) (b2bua.MediaSession, error) {
	s, err := a.r.Open(id)
	if err != nil {
		return nil, err
	}
	return s, nil
}

type cdrSink struct{ s Store }

func (c cdrSink) WriteCDR(r cdr.Record) error { return c.s.AppendCDR(r) }
