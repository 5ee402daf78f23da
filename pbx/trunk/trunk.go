// Package trunk connects the PBX to its SIP trunks: the SIP providers and
// the ISDN gateway (a SIP peer on loopback). It registers at the providers
// that want it (digest, refreshed before expiry, retried with backoff),
// answers their digest challenges for requests the B2BUA sends, resolves
// every target through pbx/resolve (RFC 3263 with failover and dead-target
// probing), and tells an INVITE that comes from a trunk apart from one of
// a phone. Which number goes over which trunk is pbx/dialplan's business.
package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// Options configure a Manager. Client, Resolver and Contact are required.
type Options struct {
	Client   *sipgo.Client
	Resolver *resolve.Resolver
	// Contact returns the PBX's own URI for a transport ("udp", "tcp"):
	// the listener requests leave from and Via names.
	Contact func(transport string) sip.Uri
	// Prepare, if set, is applied to every request before it is sent (the
	// B2BUA's: it makes UDP requests leave from the listener).
	Prepare func(*sip.Request)
	// TLS, if set, learns how to check the certificates of the trunks'
	// servers (see tlscert.Peers).
	TLS    *tlscert.Peers
	Logger *slog.Logger
	Now    func() time.Time
	// RetryMin and RetryMax bound the backoff between failed
	// registrations (defaults 5 s and 5 min).
	RetryMin, RetryMax time.Duration
	// Timeout bounds one REGISTER or OPTIONS transaction (default 32 s,
	// sipgo's 64×T1).
	Timeout time.Duration
}

// Manager holds the trunks of one config.
type Manager struct {
	o      Options
	log    *slog.Logger
	trunks []*Trunk

	mu       sync.Mutex
	runCtx   context.Context // while Run runs
	conn     *connector      // opens the TLS connections, once one is needed
	stopConn func()
}

// Trunk is one configured trunk.
type Trunk struct {
	m      *Manager
	line   config.TrunkLine
	uri    sip.Uri // what is resolved
	domain string
	// trusted are the configured prefixes; learnt are the addresses and
	// ports the host resolved to (used when trusted is empty).
	trusted []netip.Prefix
	tls     *tlscert.Peer // a tls trunk's certificate check

	mu     sync.Mutex
	learnt map[netip.AddrPort]bool
	st     Status
	regSeq uint32
	callID string
	// inUse counts the calls over the trunk (Seize, Hold, Release).
	inUse int
	// waiting counts the emergency calls in SeizeWait: an ordinary Seize
	// leaves them the channels that come free. owed counts those of them
	// that cleared a call: the channel it gives back is theirs, also
	// against another emergency call.
	waiting, owed int
	// freed is closed, and replaced, whenever a channel is given back.
	freed chan struct{}
}

// Registration states of Status.State.
const (
	StateNone        = "no registration"
	StateRegistering = "registering"
	StateRegistered  = "registered"
	StateFailing     = "failing"
)

// Status of one trunk, for `twinpbx status`.
type Status struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Host  string `json:"host"`
	State string `json:"state"`
	// Target is where the last registration (or call) went.
	Target    string    `json:"target,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Failures  int       `json:"failures,omitempty"`
	// Dead lists the targets of the host that failed lately.
	Dead []string `json:"dead,omitempty"`
	// Channels is the most calls the trunk carries at once (0: no
	// limit); InUse how many it carries now, inbound and outbound,
	// ringing or answered.
	Channels int `json:"channels,omitempty"`
	InUse    int `json:"in_use"`
}

// New checks the options and prepares the trunks of lines (as
// config.TrunksAndRoutes returns them). Nothing is sent until Run.
func New(o Options, lines []config.TrunkLine) (*Manager, error) {
	switch {
	case o.Client == nil || o.Resolver == nil:
		return nil, errors.New("trunk: a SIP client and a resolver are required")
	case o.Contact == nil:
		return nil, errors.New("trunk: the Contact function is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 5 * time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(5*time.Minute, o.RetryMin)
	}
	if o.Timeout <= 0 {
		o.Timeout = 64 * sip.T1
	}
	m := &Manager{o: o, log: o.Logger}
	for _, l := range lines {
		t, err := m.newTrunk(l)
		if err != nil {
			return nil, err
		}
		m.trunks = append(m.trunks, t)
	}
	return m, nil
}

func (m *Manager) newTrunk(l config.TrunkLine) (*Trunk, error) {
	if l.Type == "" {
		l.Type = config.LineSIP
	}
	if l.Expires == 0 {
		l.Expires = config.Duration(config.DefaultTrunkExpires)
	}
	dest := l.Host
	switch tr := strings.ToLower(l.Transport); tr {
	case "":
	case resolve.TLS:
		// RFC 5630: TLS to a domain is asked for with a sips URI, which
		// RFC 3263 resolves by SIPS+D2T NAPTR and _sips._tcp SRV.
		dest = "sips:" + dest
	default:
		dest += ";transport=" + tr
	}
	u, err := resolve.ParseTarget(dest)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", l.Name, err)
	}
	t := &Trunk{m: m, line: l, uri: u, domain: l.Domain, learnt: map[netip.AddrPort]bool{}}
	if t.domain == "" {
		t.domain = u.Host
	}
	if t.tls, err = tlsPeer(l, u.Host); err != nil {
		return nil, fmt.Errorf("trunk %s: %w", l.Name, err)
	}
	if m.o.TLS != nil && l.Type == config.LineSIP {
		m.o.TLS.Set(*t.tls)
	}
	for _, s := range l.Trusted {
		p, err := config.ParseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("trunk %s: %w", l.Name, err)
		}
		t.trusted = append(t.trusted, p)
	}
	if a, err := netip.ParseAddr(u.Host); err == nil && u.Port != 0 {
		t.learnt[netip.AddrPortFrom(a.Unmap(), uint16(u.Port))] = true
	}
	t.st = Status{Name: l.Name, Type: l.Type, Host: l.Host, State: StateNone}
	t.callID = fmt.Sprintf("reg-%s-%s", l.Name, sip.GenerateTagN(12))
	return t, nil
}

// Trunk returns the trunk called name.
func (m *Manager) Trunk(name string) (*Trunk, bool) {
	for _, t := range m.trunks {
		if t.line.Name == name {
			return t, true
		}
	}
	return nil, false
}

// Status reports every trunk, in config order.
func (m *Manager) Status() []Status {
	dead := m.o.Resolver.Dead()
	out := make([]Status, 0, len(m.trunks))
	for _, t := range m.trunks {
		t.mu.Lock()
		s := t.st
		s.Channels, s.InUse = t.line.Channels, t.inUse
		t.mu.Unlock()
		for _, d := range dead {
			if t.ownsAddr(d.IP) {
				s.Dead = append(s.Dead, d.String())
			}
		}
		out = append(out, s)
	}
	return out
}

// Run resolves every trunk's host (so that inbound calls from it are
// recognised), keeps the registrations of the trunks that register, and
// probes dead targets with OPTIONS, until ctx ends; then it removes the
// registrations (Expires: 0) and returns.
func (m *Manager) Run(ctx context.Context) {
	defer m.running(ctx)()
	var wg sync.WaitGroup
	for _, t := range m.trunks {
		wg.Go(func() { t.learn(ctx) })
		if t.line.Register {
			wg.Go(func() { t.keepRegistered(ctx) })
		}
	}
	wg.Go(func() { resolve.NewProber(m.o.Resolver, m.Probe).Run(ctx) })
	wg.Wait()
}

// learn resolves the host now and whenever it did not work, to know the
// provider's addresses.
func (t *Trunk) learn(ctx context.Context) {
	for {
		ts, err := t.m.o.Resolver.Resolve(ctx, t.uri)
		if err == nil {
			t.remember(ts...)
		}
		wait := 10 * time.Minute
		if err != nil {
			wait = 30 * time.Second
			t.m.log.Info("resolving a trunk's host", "trunk", t.line.Name, "host", t.line.Host, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (t *Trunk) remember(ts ...resolve.Target) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, x := range ts {
		t.learnt[netip.AddrPortFrom(x.IP.Unmap(), x.Port)] = true
	}
}

// ownsTarget reports whether the trunk's host resolved to target.
func (t *Trunk) ownsTarget(target resolve.Target) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.learnt[netip.AddrPortFrom(target.IP.Unmap(), target.Port)]
}

// owns reports whether a is one of the trunk's peers: any port of an
// address in a trusted prefix, or, without any, an address and port its
// host resolved to. The port matters: phones and the ISDN gateway may
// share the loopback address.
func (t *Trunk) owns(a netip.AddrPort) bool {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if len(t.trusted) > 0 {
		for _, p := range t.trusted {
			if p.Contains(a.Addr()) {
				return true
			}
		}
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.learnt[a]
}

// ownsAddr is owns for any port.
func (t *Trunk) ownsAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.trusted {
		if p.Contains(a) {
			return true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.learnt {
		if k.Addr() == a {
			return true
		}
	}
	return false
}

// Identify tells whether req (an INVITE) comes from a trunk, by its source
// address; when several trunks share the address, the one whose
// registration's contact user is the Request-URI's user wins. It returns
// the trunk and the called number: the Request-URI's user, or To's when
// the Request-URI is our registration's contact.
func (m *Manager) Identify(req *sip.Request) (t *Trunk, called string, ok bool) {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return nil, "", false
	}
	var found []*Trunk
	for _, c := range m.trunks {
		if c.owns(src) {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return nil, "", false
	}
	t = found[0]
	for _, c := range found {
		if c.contactUser() == req.Recipient.User {
			t = c
			break
		}
	}
	called = req.Recipient.User
	if called == t.contactUser() || called == "" {
		if to := req.To(); to != nil {
			called = to.Address.User
		}
	}
	return t, called, true
}

// Name of the trunk.
func (t *Trunk) Name() string { return t.line.Name }

// Seize takes one of the trunk's channels for a new call, inbound or
// outbound, and reports false when every channel is in use: the call
// must go elsewhere or be refused. An emergency call is held to the
// line's physical limit only (config.TrunkLine.EmergencyChannels): none
// on a sip trunk. Every successful Seize needs one Release.
func (t *Trunk) Seize(emergency bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if emergency {
		return t.seizeLocked(true, t.owed)
	}
	return t.seizeLocked(false, t.waiting)
}

// seizeLocked is Seize, with reserved more channels counted as in use
// (those that emergency calls wait for); callers hold mu.
func (t *Trunk) seizeLocked(emergency bool, reserved int) bool {
	limit := t.line.Channels
	if emergency {
		limit = t.line.EmergencyChannels()
	}
	if limit > 0 && t.inUse+reserved >= limit {
		return false
	}
	t.inUse++
	return true
}

// SeizeWait takes a channel for an emergency call, waiting until one
// is given back when every channel is in use. While it waits, ordinary
// calls cannot take the channel that comes free. clear, if set, is
// called (once, without the trunk's lock) when the call has to wait: it
// clears a call to make room, and must not block; the channel that call
// gives back is then kept for this one, also against other emergency
// calls. SeizeWait reports false when ctx ends first.
func (t *Trunk) SeizeWait(ctx context.Context, clear func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting++
	mine := false // this call is owed a channel
	defer func() {
		t.waiting--
		if mine {
			t.owed--
		}
	}()
	seize := func() bool {
		others := t.owed
		if mine {
			others--
		}
		return t.seizeLocked(true, others)
	}
	for {
		if seize() {
			return true
		}
		if t.freed == nil {
			t.freed = make(chan struct{})
		}
		freed := t.freed
		if clear != nil {
			t.owed++
			mine = true
		}
		t.mu.Unlock()
		if clear != nil {
			clear()
			clear = nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
		}
		t.mu.Lock()
		if ctx.Err() != nil {
			return seize()
		}
	}
}

// signalLocked wakes the calls in SeizeWait; callers hold mu.
func (t *Trunk) signalLocked() {
	if t.freed != nil {
		close(t.freed)
		t.freed = nil
	}
}

// Hold takes a channel whatever the limit: for a call that already
// runs over the trunk, restored after a failover of the twin.
func (t *Trunk) Hold() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inUse++
}

// Release gives back a channel taken by Seize or Hold.
func (t *Trunk) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inUse > 0 {
		t.inUse--
	}
	t.signalLocked()
}

// InUse is how many calls run over the trunk now.
func (t *Trunk) InUse() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inUse
}

// ReleaseAll forgets every call over every trunk: for a box that hands
// its calls to the twin without a word (b2bua.B2BUA.Abandon).
func (m *Manager) ReleaseAll() {
	for _, t := range m.trunks {
		t.mu.Lock()
		t.inUse = 0
		t.signalLocked()
		t.mu.Unlock()
	}
}

// Line returns the trunk's settings.
func (t *Trunk) Line() config.TrunkLine { return t.line }

// Domain is the host of the trunk's From, To and Request-URIs.
func (t *Trunk) Domain() string { return t.domain }

// CallerID is the number our outbound calls send in From: the trunk's
// caller_id, else its user, else the extension's number.
func (t *Trunk) CallerID(ext string) string {
	switch {
	case t.line.CallerID != "":
		return t.line.CallerID
	case t.line.User != "":
		return t.line.User
	}
	return ext
}

func (t *Trunk) contactUser() string {
	if t.line.User != "" {
		return t.line.User
	}
	return t.line.Name
}

// authUser is the digest user name.
func (t *Trunk) authUser() string {
	if t.line.AuthUser != "" {
		return t.line.AuthUser
	}
	return t.line.User
}

// Do resolves the trunk's host and calls attempt on its targets in order
// until one handles the request (see resolve.Resolver.Do): a target that
// times out or answers 503/408 is marked dead and the next is tried.
func (t *Trunk) Do(ctx context.Context, attempt resolve.Attempt) (resolve.Target, error) {
	tg, err := t.m.o.Resolver.Do(ctx, t.uri, func(x resolve.Target) (bool, error) {
		t.remember(x)
		if err := t.m.connect(ctx, t, x); err != nil {
			return true, err
		}
		return attempt(x)
	})
	if err != nil {
		return tg, fmt.Errorf("trunk %s: %w", t.line.Name, err)
	}
	t.mu.Lock()
	t.st.Target = tg.String()
	t.mu.Unlock()
	return tg, nil
}

// Authorize adds to req the answer to the challenge in res (a 401 with
// WWW-Authenticate or a 407 with Proxy-Authenticate), with the trunk's
// credentials. The caller sends req again with a higher CSeq and a new
// branch. It fails when the trunk has no credentials or the challenge is
// malformed.
func (t *Trunk) Authorize(req *sip.Request, res *sip.Response) error {
	if t.authUser() == "" && t.line.Password == "" {
		return fmt.Errorf("trunk %s: challenged with %d but no user or password is configured", t.line.Name, res.StatusCode)
	}
	return Authorize(req, res, t.authUser(), t.line.Password)
}

// Authorize answers the digest challenge of res (401 or 407) in req.
func Authorize(req *sip.Request, res *sip.Response, user, password string) error {
	chName, authName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		chName, authName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(chName)
	if h == nil {
		return fmt.Errorf("answering a %d: no %s header", res.StatusCode, chName)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return fmt.Errorf("answering a %d: parsing %s: %w", res.StatusCode, chName, err)
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{
		Method: string(req.Method), URI: req.Recipient.String(),
		Username: user, Password: password,
	})
	if err != nil {
		return fmt.Errorf("answering a %d: %w", res.StatusCode, err)
	}
	req.RemoveHeader(authName)
	req.AppendHeader(sip.NewHeader(authName, cred.String()))
	return nil
}

// Resend readies req to be sent again after a challenge: the next CSeq
// and a new branch in the top Via.
func Resend(req *sip.Request) {
	if cs := req.CSeq(); cs != nil {
		cs.SeqNo++
	}
	if v := req.Via(); v != nil {
		v.Params.Add("branch", sip.GenerateBranch())
	}
}

// Address puts target into req: its transport and destination, and our
// Via and Contact for that transport.
func (m *Manager) Address(req *sip.Request, target resolve.Target) {
	tp := strings.ToUpper(target.Transport)
	if tp == "" {
		tp = "UDP"
	}
	us := m.o.Contact(strings.ToLower(tp))
	req.RemoveHeader("Via")
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp, Host: us.Host, Port: us.Port, Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranch())
	v.Params.Add("rport", "")
	req.PrependHeader(v)
	req.SetTransport(tp)
	req.SetDestination(target.Addr())
	if m.o.Prepare != nil {
		m.o.Prepare(req)
	}
}

// transact sends req and returns its final response, answering one digest
// challenge with the trunk's credentials.
func (t *Trunk) transact(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	for round := 0; ; round++ {
		tctx, cancel := context.WithTimeout(ctx, t.m.o.Timeout)
		res, err := sipdo.Do(tctx, t.m.o.Client, req)
		cancel()
		if err != nil {
			return nil, err
		}
		if (res.StatusCode == 401 || res.StatusCode == 407) && round == 0 {
			if err := t.Authorize(req, res); err != nil {
				return res, err
			}
			Resend(req)
			if t.m.o.Prepare != nil {
				t.m.o.Prepare(req)
			}
			continue
		}
		return res, nil
	}
}

// Probe sends OPTIONS to a target and returns nil when it answered at all
// (any response shows it is alive), for resolve.Prober.
func (m *Manager) Probe(ctx context.Context, target resolve.Target) error {
	u := sip.Uri{Scheme: "sip", Host: target.IP.String(), Port: int(target.Port)}
	req := sip.NewRequest(sip.OPTIONS, u)
	us := m.o.Contact(target.Transport)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "twinpbx", Host: us.Host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(20))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	m.Address(req, target)
	for _, t := range m.trunks {
		if t.ownsTarget(target) {
			if err := m.connect(ctx, t, target); err != nil {
				return fmt.Errorf("probing %s: %w", target, err)
			}
			break
		}
	}
	res, err := sipdo.Do(ctx, m.o.Client, req)
	if err != nil {
		return fmt.Errorf("probing %s: %w", target, err)
	}
	if res.StatusCode == sip.StatusServiceUnavailable {
		return fmt.Errorf("probing %s: 503", target)
	}
	return nil
}

// keepRegistered registers, refreshes at half the granted time, and
// retries failures with doubling backoff, until ctx ends; then it
// unregisters.
func (t *Trunk) keepRegistered(ctx context.Context) {
	log := t.m.log.With("trunk", t.line.Name)
	backoff := t.m.o.RetryMin
	for {
		t.setState(func(s *Status) {
			if s.State != StateRegistered {
				s.State = StateRegistering
			}
		})
		granted, err := t.register(ctx, t.line.Expires.D())
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		if err != nil {
			t.setState(func(s *Status) {
				s.State, s.LastError, s.Expires = StateFailing, err.Error(), time.Time{}
				s.Failures++
			})
			log.Warn("registration at the provider failed", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(2*backoff, t.m.o.RetryMax)
		} else {
			first := false
			t.setState(func(s *Status) {
				first = s.State != StateRegistered
				s.State, s.Expires, s.LastError, s.Failures = StateRegistered, t.m.o.Now().Add(granted), "", 0
			})
			if first {
				log.Info("registered at the provider", "expires", granted)
			}
			backoff = t.m.o.RetryMin
			wait = granted / 2
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			continue
		}
		break
	}
	uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := t.register(uctx, 0); err != nil {
		log.Debug("removing the registration", "err", err)
	}
	t.setState(func(s *Status) { s.State, s.Expires = StateNone, time.Time{} })
}

func (t *Trunk) setState(f func(*Status)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.st)
}

// register sends one REGISTER (expires 0 removes it) through the
// resolver's targets and returns the time granted.
func (t *Trunk) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	var granted time.Duration
	_, err := t.Do(ctx, func(target resolve.Target) (bool, error) {
		req := t.registerRequest(target, expires)
		res, err := t.transact(ctx, req)
		t.mu.Lock()
		t.regSeq = max(t.regSeq, req.CSeq().SeqNo)
		t.mu.Unlock()
		if err != nil {
			return resolve.Retryable(res, err), err
		}
		if !res.IsSuccess() {
			err := fmt.Errorf("the provider answered %d %s", res.StatusCode, res.Reason)
			return resolve.Retryable(res, nil), err
		}
		granted = grantedExpiry(res, req.Contact(), expires)
		return false, nil
	})
	if err != nil {
		return 0, fmt.Errorf("registering: %w", err)
	}
	return granted, nil
}

func (t *Trunk) registerRequest(target resolve.Target, expires time.Duration) *sip.Request {
	ruri := sip.Uri{Scheme: "sip", Host: t.domain}
	req := sip.NewRequest(sip.REGISTER, ruri)
	aor := sip.Uri{Scheme: "sip", User: t.line.User, Host: t.domain}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(t.callID)
	req.AppendHeader(&cid)
	t.mu.Lock()
	t.regSeq++
	seq := t.regSeq
	t.mu.Unlock()
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	us := t.m.o.Contact(target.Transport)
	us.User = t.contactUser()
	req.AppendHeader(&sip.ContactHeader{Address: us})
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.AppendHeader(sip.NewHeader("User-Agent", "twinpbx"))
	req.SetBody(nil)
	t.m.Address(req, target)
	return req
}

// grantedExpiry reads the time the registrar granted: the expires
// parameter of our Contact in the 200, else its Expires header, else what
// we asked for.
func grantedExpiry(res *sip.Response, ours *sip.ContactHeader, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || ours == nil || c.Address.User != ours.Address.User || c.Address.Host != ours.Address.Host || c.Address.Port != ours.Address.Port {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// Names lists the trunks in config order.
func (m *Manager) Names() []string {
	out := make([]string, len(m.trunks))
	for i, t := range m.trunks {
		out[i] = t.line.Name
	}
	return slices.Clip(out)
}
