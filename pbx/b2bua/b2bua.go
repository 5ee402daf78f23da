// Package b2bua connects calls between extensions: a back-to-back user agent
// on sipgo that answers the caller's INVITE itself, rings every registered
// device of the callee in parallel on new dialogs, and anchors the media in
// the PBX's relay so that both legs only ever see the PBX's addresses.
// With a dial plan and trunks (Options.Dialplan, Options.Trunks) it also
// places calls out over the trunks of a route, one trunk and one server
// after the other (outbound.go), and rings the extension of a DID when a
// trunk calls in.
//
// Each call is one struct guarded by its own mutex; the INVITE handler
// drives the set-up, and in-dialog requests (ACK, BYE, re-INVITE, UPDATE,
// INFO, REFER, ...) lock the call to change its state. No lock is held
// while waiting on the network. The dialog state of both legs is kept in
// plain exported structs (Dialog, CallState) so that it can be persisted:
// with Options.Calls set, every answered call is saved with its media
// state (SavedCall), and the twin that takes over after a failover carries
// the calls on with Restore; a box that hands over leaves them with
// Abandon. Ringing calls are not saved.
//
// An extension is in at most two calls at once with call waiting (the
// second rings its phones while the first goes on; a third gets 486 Busy
// Here), one without. An INVITE without SDP (late offer) gets an offer of
// the PBX's own (G.711, RFC 4733 events) towards the callee and the
// callee's terms as the offer in its 200 OK; the caller answers in its
// ACK. Limits, by design for now: re-INVITE and UPDATE without SDP are
// answered 488; redirects (3xx) from a device count as 480.
//
// Reliable provisional responses (RFC 3262, prack.go) are ended on each
// leg on its own: devices are rung with Supported: 100rel and each
// reliable 180/183 they send is PRACKed by the fork; a caller gets
// reliable provisionals of the PBX's own only when its INVITE requires
// 100rel.
//
// Every leg over a trunk holds one of the trunk's channels
// (trunk.Trunk.Seize) from its attempt to its end, whatever ends it; a
// full trunk is skipped for the next one of the route, and an inbound
// call to a full trunk gets 503. A blind transfer keeps the transferee's
// media session: the relay re-points its far side at the target, so the
// transferee is not re-INVITEd. Its target goes through the dial plan as
// the transferor's own call would, so an outside number goes out over
// the trunks of its route (a party on a trunk may transfer to extensions
// only). An attended transfer (Refer-To with Replaces naming the
// transferor's other call, attended.go) joins the two parties left in one
// relay session made of the ports they already use (media.Relay.Join);
// only a party left on hold, or whose codec the other did not offer, gets
// a re-INVITE. An INVITE with a Replaces header (invitereplaces.go) puts
// the calling phone in the place of the party on the named dialog.
package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
	"github.com/twinpbx/twinpbx/pbx/trunk"
)

// Locator finds the live devices of an extension. *location.Service
// implements it.
type Locator interface {
	Lookup(aor string) []location.Binding
}

// Directory knows the configured extensions.
type Directory interface {
	Extension(number string) (config.Extension, bool)
}

// Authenticator checks digest credentials. *auth.Digest implements it.
type Authenticator interface {
	// Authenticate returns the authenticated user. On false it has already
	// answered req through tx (407 challenge or 403).
	Authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (user string, ok bool)
}

// Media opens relay sessions; one per call, named by the caller's Call-ID.
type Media interface {
	Open(id string) (MediaSession, error)
	// Restore reopens a session from its exported state, on the same
	// ports, after a failover.
	Restore(state media.SessionState) (MediaSession, error)
}

// MediaSession is the relay of one call.
type MediaSession interface {
	// Rewrite turns an SDP body received from leg `from` (LegA = caller
	// side, LegB = callee side) into the body to send to the other leg,
	// pointing at the relay.
	Rewrite(from Leg, body []byte) ([]byte, error)
	// LateOffer returns the offer for the other leg on behalf of leg from,
	// whose INVITE had no SDP; from's answer comes later through Rewrite.
	LateOffer(from Leg) ([]byte, error)
	// State exports the session, to be saved with the call.
	State() media.SessionState
	Close() error
}

// CDRWriter stores call detail records.
type CDRWriter interface {
	WriteCDR(cdr.Record) error
}

// Options configure a B2BUA. Client, Locator, Directory, Auth, Media, CDR
// and Contact are required.
type Options struct {
	Client    *sipgo.Client
	Locator   Locator
	Directory Directory
	Auth      Authenticator
	Media     Media
	CDR       CDRWriter
	// RingTimeout ends an unanswered call with 480 (default 60 s).
	RingTimeout time.Duration
	// Contact returns the PBX's own Contact URI for a transport ("udp" or
	// "tcp"): the listener's address. It also names Via and the local
	// address requests leave from.
	Contact func(transport string) sip.Uri
	Logger  *slog.Logger
	Now     func() time.Time
	// Calls, if set, keeps every answered call (dialogs and media state)
	// so that the twin can carry it on after a failover (see Restore).
	Calls CallStore
	// Dialplan, if set, returns the dial plan in force: it decides whether
	// a dialled number is an extension, goes out over trunks (Trunks is
	// then required) or is an emergency call. Nil: extensions only.
	Dialplan func() *dialplan.Plan
	// Trunks places outbound calls and recognises inbound ones.
	Trunks *trunk.Manager
	// TrunkAnswer is how long a trunk target may stay silent (not even
	// 100 Trying) before the next target is tried (default 4 s).
	TrunkAnswer time.Duration
	// PreemptWait bounds how long an emergency call waits for the channel
	// of the ordinary call it cleared to come free (default 5 s).
	PreemptWait time.Duration
	// GlareWait, if set, replaces the random 2.1-4 s pause before an
	// offer the PBX makes itself (a transfer's re-INVITE) is sent again
	// after a 491 (RFC 3261 §14.1).
	GlareWait time.Duration
	// RestoredIdle ends a restored call when no media packet arrives from
	// either phone within it after the restore: both phones hung up
	// during the outage (default 30 s; negative: never). It needs a
	// media session that counts packets (*media.Session does).
	RestoredIdle time.Duration
	// Site forwards calls to phones held by other boxes of a site cluster
	// and trusts the calls they forward (site.go); nil: no site.
	Site Site
	// Voicemail, if set, takes the calls to extensions with a mailbox
	// that are not answered in its time, busy or not registered
	// (voicemail.go).
	Voicemail Voicemail
	// Flow points requests to phones whose TCP or TLS connection is gone
	// at their Contacts (package phoneflow; its ConnectTLS opens a TLS
	// connection that takes a phone's self-signed certificate); nil: one
	// over Client and Contact, the stack opening TLS connections with its
	// own check, which phones' certificates do not pass.
	Flow *phoneflow.Redirector
	// Forwarder, if set, reports whether a binding's source is the twin's
	// own-address forwarder (forwarder.go): a call to such a binding that
	// the forwarder leaves silent rings the phone at its Contact.
	Forwarder func(source string) bool
}

// B2BUA is the call engine. Create it with New, attach it with Register.
type B2BUA struct {
	o   Options
	log *slog.Logger

	mu sync.Mutex
	// calls by the caller's Call-ID (also the media session id).
	calls map[string]*call
	// legs maps every leg's Call-ID to its call.
	legs map[string]*call
	// active counts calls per extension, for "busy".
	active map[string]int
	// wg counts request handlers and helper goroutines, so that
	// HangupAll can wait for them.
	wg inflight
	// trunkLegs maps the Call-ID of every leg that runs over a trunk to
	// the trunk's name, so that a challenge to one of our in-dialog
	// requests is answered with the trunk's credentials.
	trunkLegs sync.Map
}

// inflight counts running goroutines; unlike sync.WaitGroup it may be
// incremented from zero while somebody waits.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (f *inflight) Add(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n += n
}

func (f *inflight) Done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
	}
}

// wait returns when nothing runs, or false when ctx ends first.
func (f *inflight) wait(ctx context.Context) bool {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return true
	}
	ch := f.idle
	f.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// tracked wraps a handler so that HangupAll waits for it.
func (b *B2BUA) tracked(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		b.wg.Add(1)
		defer b.wg.Done()
		h(req, tx)
	}
}

// New checks the options and returns the B2BUA.
func New(o Options) (*B2BUA, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("b2bua: a SIP client is required")
	case o.Locator == nil || o.Directory == nil || o.Auth == nil:
		return nil, errors.New("b2bua: locator, directory and authenticator are required")
	case o.Media == nil || o.CDR == nil:
		return nil, errors.New("b2bua: media and CDR writer are required")
	case o.Contact == nil:
		return nil, errors.New("b2bua: the Contact function is required")
	case o.Dialplan != nil && o.Trunks == nil:
		return nil, errors.New("b2bua: a dial plan needs the trunks")
	}
	if o.PreemptWait <= 0 {
		o.PreemptWait = 5 * time.Second
	}
	if o.TrunkAnswer <= 0 {
		o.TrunkAnswer = 4 * time.Second
	}
	if o.RingTimeout <= 0 {
		o.RingTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RestoredIdle == 0 {
		o.RestoredIdle = 30 * time.Second
	}
	if o.Flow == nil {
		o.Flow = &phoneflow.Redirector{Client: o.Client, Contact: o.Contact, Logger: o.Logger}
	}
	return &B2BUA{
		o:      o,
		log:    o.Logger,
		calls:  map[string]*call{},
		legs:   map[string]*call{},
		active: map[string]int{},
	}, nil
}

// Router is where the B2BUA's handlers are registered; *sipgo.Server is
// one, and the PBX passes a wrapper that rejects malformed requests first.
type Router interface {
	OnRequest(method sip.RequestMethod, handler sipgo.RequestHandler)
}

// Register installs the B2BUA's handlers for INVITE, ACK, CANCEL, BYE,
// REFER, UPDATE, INFO, NOTIFY, MESSAGE and PRACK.
func (b *B2BUA) Register(r Router) {
	r.OnRequest(sip.INVITE, b.tracked(b.serveInvite))
	r.OnRequest(sip.ACK, b.serveAck)
	r.OnRequest(sip.CANCEL, b.serveCancel)
	r.OnRequest(sip.BYE, b.tracked(b.serveBye))
	r.OnRequest(sip.REFER, b.tracked(b.serveRefer))
	r.OnRequest(sip.UPDATE, b.tracked(b.serveUpdate))
	r.OnRequest(sip.INFO, b.tracked(b.servePassThrough))
	r.OnRequest(sip.NOTIFY, b.tracked(b.servePassThrough))
	r.OnRequest(sip.MESSAGE, b.tracked(b.servePassThrough))
	r.OnRequest(sip.PRACK, b.tracked(b.servePrack))
}

// CallInfo is one call for the status page.
type CallInfo struct {
	ID         string    `json:"id"`
	Caller     string    `json:"caller"`
	CallerName string    `json:"caller_name,omitempty"`
	Callee     string    `json:"callee"`
	Trunk      string    `json:"trunk,omitempty"`
	State      string    `json:"state"`
	Start      time.Time `json:"start"`
	Answer     time.Time `json:"answer,omitzero"`
}

// Calls lists the calls in progress, oldest first.
func (b *B2BUA) Calls() []CallInfo {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	out := make([]CallInfo, 0, len(cs))
	for _, c := range cs {
		c.mu.Lock()
		out = append(out, CallInfo{
			ID: c.st.ID, Caller: c.st.Caller, CallerName: c.st.CallerName, Callee: c.st.Callee, Trunk: c.st.Trunk,
			State: c.st.State, Start: c.st.Start, Answer: c.st.Answer,
		})
		c.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Snapshot returns the full state of every call in progress, for
// persistence.
func (b *B2BUA) Snapshot() []CallState {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	out := make([]CallState, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.state())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// HangupAll ends every call: ringing calls are cancelled (503 to the
// caller), answered calls get BYE on both legs. CDRs are written. It
// returns when every call handler has finished or ctx ends.
func (b *B2BUA) HangupAll(ctx context.Context) {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.shutdown(ctx) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if !b.wg.wait(ctx) {
		b.log.Warn("calls still ending at shutdown", "err", ctx.Err())
	}
}

// contact is our Contact/Via URI for a transport.
func (b *B2BUA) contact(transport string) sip.Uri {
	return b.o.Contact(strings.ToLower(transport))
}

// Prepare names our listener as the local address of req where the
// transport allows it (see laddr). The trunks use it for their own
// requests (REGISTER, OPTIONS), which are on no call's leg.
func (b *B2BUA) Prepare(req *sip.Request) { _ = b.prepareSend(req) }

// prepare readies a request of ours for sending: an in-dialog request to
// a phone whose TCP or TLS connection is closed goes to its Contact
// (package phoneflow; a new INVITE to a phone is pointed there by startFork),
// then as Prepare. An error means req must not be sent: a request in a
// call over a TLS trunk for which the trunk could not have a connection
// that passes its own check (connectTrunk).
func (b *B2BUA) prepare(req *sip.Request) error {
	if inDialog(req) && !b.trunkLeg(req) {
		if _, err := b.reconnect(req); err != nil {
			b.log.Info("cannot reach the phone over TLS", "method", req.Method, "err", err)
		}
	}
	return b.prepareSend(req)
}

func (b *B2BUA) prepareSend(req *sip.Request) error {
	if err := b.connectTrunk(req); err != nil {
		return err
	}
	la := laddr(req.Transport(), b.contact(req.Transport()))
	if la.IP == nil {
		return nil
	}
	pool := b.o.Client.TransportLayer().Pool("udp")
	if pool == nil {
		return nil
	}
	if c := pool.Get(la.String()); c != nil {
		_, _ = c.TryClose()
		req.Laddr = la
	}
	return nil
}

// connectTrunk has the trunks open the TLS connection of a request in a
// call over a trunk when the provider closed it (trunk.Manager.Connect):
// then it carries the trunk's SNI and is checked by the trunk's own CA
// and names, not by the SIP stack's fallback check. When the trunk has
// no such connection (its check refused the server, or it could not
// connect) the error says so and the request is not sent: the SIP stack
// would otherwise dial by itself, or use an open connection to the same
// address, checked only as good enough for some trunk.
func (b *B2BUA) connectTrunk(req *sip.Request) error {
	if b.o.Trunks == nil || !strings.EqualFold(req.Transport(), "tls") {
		return nil
	}
	cid := req.CallID()
	if cid == nil {
		return nil
	}
	name, ok := b.trunkLegs.Load(cid.Value())
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	if err := b.o.Trunks.Connect(ctx, name.(string), req.Transport(), req.Destination()); err != nil {
		b.log.Warn("TLS to a trunk's server: not sending", "trunk", name, "method", req.Method, "err", err)
		return fmt.Errorf("%w: TLS to trunk %v's server %s: %w", sip.ErrTransactionTransport, name, req.Destination(), err)
	}
	return nil
}

// do sends a non-INVITE request and returns its final response. A
// request on a trunk leg that the provider challenges is sent once more
// with the trunk's credentials.
func (b *B2BUA) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if err := b.prepare(req); err != nil {
		return nil, fmt.Errorf("sending %s: %w", req.Method, err)
	}
	res, err := sipdo.Do(ctx, b.o.Client, req)
	if err != nil {
		return nil, fmt.Errorf("sending %s: %w", req.Method, err)
	}
	if (res.StatusCode == 401 || res.StatusCode == 407) && req.Method != sip.CANCEL {
		if again := b.authorizeForTrunk(req, res); again {
			res, err = sipdo.Do(ctx, b.o.Client, req)
			if err != nil {
				return nil, fmt.Errorf("sending %s with credentials: %w", req.Method, err)
			}
		}
	}
	return res, nil
}

// authorizeForTrunk readies req, challenged by res, to be sent again with
// the credentials of the trunk its leg runs over. The leg's CSeq follows
// the one used. It reports false when req's leg is not on a trunk or the
// challenge cannot be answered.
func (b *B2BUA) authorizeForTrunk(req *sip.Request, res *sip.Response) bool {
	cid := req.CallID()
	if cid == nil || b.o.Trunks == nil {
		return false
	}
	name, ok := b.trunkLegs.Load(cid.Value())
	if !ok {
		return false
	}
	t, ok := b.o.Trunks.Trunk(name.(string))
	if !ok {
		return false
	}
	if err := t.Authorize(req, res); err != nil {
		b.log.Info("answering a trunk's challenge", "trunk", t.Name(), "method", req.Method, "err", err)
		return false
	}
	trunk.Resend(req)
	if err := b.prepare(req); err != nil {
		b.log.Info("answering a trunk's challenge", "trunk", t.Name(), "method", req.Method, "err", err)
		return false
	}
	b.mu.Lock()
	c := b.legs[cid.Value()]
	b.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		for _, l := range c.legs {
			if l != nil && l.Dialog.CallID == cid.Value() {
				l.Dialog.LocalSeq = max(l.Dialog.LocalSeq, req.CSeq().SeqNo)
			}
		}
		c.mu.Unlock()
	}
	return true
}

func (b *B2BUA) write(req *sip.Request) error {
	if err := b.prepare(req); err != nil {
		return fmt.Errorf("sending %s: %w", req.Method, err)
	}
	if err := b.o.Client.WriteRequest(req, sipdo.Unchanged); err != nil {
		return fmt.Errorf("sending %s: %w", req.Method, err)
	}
	return nil
}

// lookup finds the call and leg side of an in-dialog request.
func (b *B2BUA) lookup(req *sip.Request) (*call, Leg, error) {
	cid := req.CallID()
	if cid == nil {
		return nil, 0, errNoDialog
	}
	b.mu.Lock()
	c := b.legs[cid.Value()]
	b.mu.Unlock()
	if c == nil {
		return nil, 0, errNoDialog
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, side := range []Leg{LegA, LegB} {
		l := c.legs[side]
		if l != nil && l.Dialog.CallID == cid.Value() && l.Dialog.matches(req) {
			return c, side, nil
		}
	}
	return nil, 0, errNoDialog
}

func (b *B2BUA) bindLeg(callID string, c *call) {
	b.mu.Lock()
	b.legs[callID] = c
	b.mu.Unlock()
}

func (b *B2BUA) unbindLeg(callID string, c *call) {
	b.mu.Lock()
	if b.legs[callID] == c {
		delete(b.legs, callID)
	}
	b.mu.Unlock()
}

func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, log *slog.Logger) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if err := tx.Respond(res); err != nil {
		log.Debug("responding", "code", code, "method", req.Method, "err", err)
	}
}
