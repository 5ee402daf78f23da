// Package voicemail is the PBX's mailboxes: a call an extension does not
// answer (or that finds it busy or not registered) is diverted here by
// the B2BUA; the PBX answers the caller itself, plays the owner's
// recorded greeting (greeting.go) or a tone greeting, and a beep, records
// the caller's RTP (G.711) and stores the message with its caller, time,
// length and checksum in the replicated store. The owner dials the
// voicemail number to listen (DTMF by RFC 4733 steers) or to record the
// greeting; phones that SUBSCRIBE to message-summary (RFC 3842) are told
// when messages wait (their subscriptions are stored, so the twin carries
// them on), and registered phones that do not subscribe are told
// unsolicited (unsolicited.go).
//
// There are no recorded prompts: the menus speak in tones (g711.go names
// them). The mailbox holds the dialogs it answers itself; Wrap routes
// their in-dialog requests to it.
package voicemail

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// CDRVoicemail is the disposition of the CDR of a call the mailbox
// answered (to leave a message or to listen).
const CDRVoicemail cdr.Disposition = "VOICEMAIL"

// MaxStored bounds what a mailbox can hold whatever the config says
// (config.MaxVoicemailMessages).
const MaxStored = config.MaxVoicemailMessages

// MaxCalls bounds the calls the mailboxes answer at once (recording or
// listening); more get 503. MaxSubscriptions bounds the message-summary
// subscriptions; more get 503.
const (
	MaxCalls         = 64
	MaxSubscriptions = 4096
)

// MinMessage is the shortest message kept; shorter ones are dropped
// (a caller who hung up at the beep).
const MinMessage = time.Second

// Authenticator checks digest credentials; *auth.Digest implements it.
type Authenticator interface {
	Authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (user string, ok bool)
}

// Directory knows the configured extensions.
type Directory interface {
	Extension(number string) (config.Extension, bool)
}

// Options configure a Service. Client, Auth, Directory, Store, Contact and
// Config are required.
type Options struct {
	Client    *sipgo.Client
	Auth      Authenticator
	Directory Directory
	Store     Store
	// CDR receives the record of every call the mailbox answered.
	CDR func(cdr.Record) error
	// Contact is our Contact URI for a transport (see b2bua.Options).
	Contact func(transport string) sip.Uri
	// Prepare readies a request to leave from our listener.
	Prepare func(*sip.Request)
	// Redirect, if set, points a request to a phone whose TCP or TLS
	// connection is closed at the phone's Contact (package phoneflow's
	// Redirector, as the B2BUA's requests); it reports an error when a
	// TLS connection to the phone could not be opened.
	Redirect func(*sip.Request) (bool, error)
	// Config returns the voicemail section in force (nil: voicemail off).
	Config func() *config.Voicemail
	// MediaAddr is the address RTP sockets bind to and SDP names.
	MediaAddr netip.Addr
	// RTPPort lends the RTP port of a mailbox call from sip.rtp_ports
	// (the media relay's Lease); it is released when the call ends. Nil:
	// an ephemeral port on MediaAddr (tests).
	RTPPort func() (PortLease, error)
	// RTPPortAt lends the given RTP port of sip.rtp_ports (the relay's
	// LeaseAt): the twin that takes over reopens the port of a message
	// being recorded and carries the call on (carryon.go). Nil: such
	// calls are ended with BYE, the message kept as recorded so far.
	RTPPortAt func(port int) (PortLease, error)
	// Contacts returns the registered contacts of an extension (the
	// location service's Lookup), for unsolicited MWI; nil: none is sent.
	Contacts func(ext string) []location.Binding
	// Idle ends a call from which no RTP came for this long (default 30 s).
	Idle time.Duration
	// ChunkEvery is how often a message being recorded is saved so far
	// (default ChunkEvery), when the store keeps mailbox calls.
	ChunkEvery time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// PortLease is an RTP port lent to a mailbox call; *media.Lease
// implements it. Release closes the socket and gives the port back; it
// may be called more than once.
type PortLease interface {
	RTP() *net.UDPConn
	Release() error
}

// ephemeral is the PortLease of a port the kernel chose.
type ephemeral struct{ c *net.UDPConn }

func (e ephemeral) RTP() *net.UDPConn { return e.c }
func (e ephemeral) Release() error {
	if err := e.c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Service answers the mailbox calls and subscriptions.
type Service struct {
	o     Options
	log   *slog.Logger
	boxes *Mailboxes

	mu       sync.Mutex
	sessions map[string]*session // by Call-ID
	subs     map[string]*subscription
	told     map[string]map[string]told // unsolicited MWI, by mailbox and contact
	closed   bool
	wg       sync.WaitGroup
	// sending orders the unsolicited NOTIFYs of a contact.
	sending [64]sync.Mutex
	// restored: the stored subscriptions have been read (subpersist.go).
	restoreMu sync.Mutex
	restored  bool
	// finished: the stored mailbox calls have been finished
	// (inprogress.go); guarded by finishMu.
	finishMu sync.Mutex
	finished bool
	// handedOver is set by Abandon and cleared by TakeOver; writeMu
	// orders it with the writes of subscriptions and of what phones were
	// told (storeWrite), so that none lands in the store after the box
	// handed over: its twin writes the store then.
	writeMu    sync.RWMutex
	handedOver bool
}

// New checks the options and returns the service.
func New(o Options) (*Service, error) {
	switch {
	case o.Client == nil || o.Auth == nil || o.Directory == nil || o.Store == nil:
		return nil, errors.New("voicemail: client, authenticator, directory and store are required")
	case o.Contact == nil || o.Config == nil:
		return nil, errors.New("voicemail: the Contact and Config functions are required")
	case !o.MediaAddr.IsValid():
		return nil, errors.New("voicemail: a media address is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Second
	}
	if o.ChunkEvery <= 0 {
		o.ChunkEvery = ChunkEvery
	}
	if o.Prepare == nil {
		o.Prepare = func(*sip.Request) {}
	}
	if o.RTPPort == nil {
		o.RTPPort = func() (PortLease, error) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.MediaAddr, 0)))
			if err != nil {
				return nil, err
			}
			return ephemeral{c}, nil
		}
	}
	if o.CDR == nil {
		o.CDR = func(cdr.Record) error { return nil }
	}
	s := &Service{o: o, log: o.Logger, sessions: map[string]*session{}, subs: map[string]*subscription{}, told: map[string]map[string]told{}}
	s.boxes = NewMailboxes(o.Store, func() int { return o.Config().Messages() }, s.changed)
	return s, nil
}

// Mailboxes gives access to the stored messages (export, status).
func (s *Service) Mailboxes() *Mailboxes { return s.boxes }

// After reports how long a call to ext rings before its mailbox answers;
// ok is false when ext has no mailbox or its mailbox cannot take a
// message (full of new ones: logged as an alarm).
func (s *Service) After(ext string) (time.Duration, bool) {
	v := s.o.Config()
	e, known := s.o.Directory.Extension(ext)
	if !known || !v.Mailbox(e) {
		return 0, false
	}
	sum, err := s.boxes.Summary(ext)
	if err != nil {
		s.log.Error("reading a mailbox", "mailbox", ext, "err", err)
		return 0, false
	}
	if sum.New >= v.Messages() {
		s.log.Error("alarm: mailbox full of new messages; callers are not offered it", "mailbox", ext, "new", sum.New, "alarm", "voicemail_full")
		return 0, false
	}
	return v.AfterTime(), true
}

// Diversion says why and for whom a call reaches a mailbox.
type Diversion struct {
	Mailbox    string
	Caller     string
	CallerName string
	// Reason is "no-answer", "busy" or "unavailable" (not registered).
	Reason string
	// Tag is the To tag the caller has seen in our provisional
	// responses; empty: a new one.
	Tag string
	// Start is when the call arrived (for the CDR).
	Start time.Time
	// Release, if set, is called once when the mailbox call has ended or
	// was refused: a caller that came in over a trunk gives back the
	// channel it held while it left its message.
	Release func()
}

// Router is where handlers are registered (see b2bua.Router).
type Router interface {
	OnRequest(method sip.RequestMethod, handler sipgo.RequestHandler)
}

type wrapped struct {
	s *Service
	r Router
}

// Wrap returns a Router that gives the mailbox the requests that are its
// own (an INVITE to the voicemail number, in-dialog requests of calls it
// answered) and everything else to the handlers registered through it.
func (s *Service) Wrap(r Router) Router { return wrapped{s, r} }

func (w wrapped) OnRequest(m sip.RequestMethod, h sipgo.RequestHandler) {
	w.r.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
		if !w.s.serve(req, tx) {
			h(req, tx)
		}
	})
}

// serve handles req when it is the mailbox's; it reports whether it was.
func (s *Service) serve(req *sip.Request, tx sip.ServerTransaction) bool {
	cid := req.CallID()
	if cid == nil {
		return false
	}
	s.mu.Lock()
	ss := s.sessions[cid.Value()]
	s.mu.Unlock()
	if ss != nil {
		ss.inDialog(req, tx)
		return true
	}
	s.ensureFinished()
	if req.Method == sip.INVITE && !hasToTag(req) && s.o.Config() != nil && req.Recipient.User == s.o.Config().DialNumber() && req.GetHeader("Replaces") == nil {
		s.serveListen(req, tx)
		return true
	}
	return false
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// Close hangs up every mailbox call and waits for them, or for ctx.
func (s *Service) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	ss := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	for _, x := range ss {
		x.cancel(errShutdown)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

var (
	errShutdown  = errors.New("the PBX is shutting down")
	errHangup    = errors.New("the caller hung up")
	errAbandoned = errors.New("the box handed over to its twin")
)

// Abandon ends every mailbox call at once, without BYE or CDR, and
// forgets the subscriptions: for a box that hands over to its twin and
// must not write to its store any more. A message being recorded is
// saved as far as it got before Abandon returns; the twin keeps it, ends
// the call and writes its CDR (finishCalls), as after a failover.
func (s *Service) Abandon() {
	s.writeMu.Lock()
	s.handedOver = true
	s.writeMu.Unlock()
	s.mu.Lock()
	ss := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		ss = append(ss, x)
	}
	clear(s.subs)
	clear(s.told)
	s.mu.Unlock()
	for _, x := range ss {
		x.handOver()
		x.cancel(errAbandoned)
	}
	// From now on the twin writes the mailboxes and the subscriptions;
	// this box sees its writes by replication only.
	s.boxes.Forget()
	s.restoreMu.Lock()
	s.restored = false
	s.restoreMu.Unlock()
	s.finishMu.Lock()
	s.finished = false
	s.finishMu.Unlock()
}

// TakeOver readies the mailboxes of a box that takes over from its twin:
// counts kept in memory are read again from the store, which holds the
// twin's writes, the twin's message-summary subscriptions are carried
// on (CSeqs raised by SeqMargin), and its mailbox calls in progress are
// carried on or finished (finishCalls).
func (s *Service) TakeOver() {
	s.writeMu.Lock()
	s.handedOver = false
	s.writeMu.Unlock()
	s.boxes.Forget()
	s.restoreMu.Lock()
	s.restored = true
	s.restoreSubs()
	s.restoreTold()
	s.restoreMu.Unlock()
	s.finishMu.Lock()
	defer s.finishMu.Unlock()
	s.finished = true
	s.finishCalls()
}

// abandoned reports whether the box handed the session over.
func (ss *session) abandoned() bool { return errors.Is(context.Cause(ss.ctx), errAbandoned) }

// session is one call the mailbox answered.
type session struct {
	s      *Service
	d      *dialog
	ep     *endpoint
	us     sip.Uri
	ctx    context.Context
	cancel context.CancelCauseFunc
	acked  chan struct{}
	once   sync.Once
	log    *slog.Logger
	// port is the RTP port the call holds until finish.
	port PortLease
	// done, if set, runs once the call is over (Diversion.Release).
	done func()
	// byUs is set when we hang up (BYE sent).
	mu   sync.Mutex
	byUs bool
	// save is the call's record in the store, nil when the store keeps
	// none (inprogress.go).
	save *callSave
	// left: the box handed the call over (handOver).
	left bool
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// answer opens the RTP socket, answers req with 200 and our SDP and
// lists the session. On failure it has answered with an error.
func (s *Service) answer(req *sip.Request, tx sip.ServerTransaction, tag string, log *slog.Logger) (*session, bool) {
	o, err := parseOffer(req.Body())
	if err != nil {
		log.Info("mailbox call refused", "err", err)
		respondPlain(tx, req, 488, "Not Acceptable Here", log)
		return nil, false
	}
	if tag == "" {
		tag = sip.GenerateTagN(16)
	}
	d, err := newDialog(req, tag)
	if err != nil {
		log.Info("mailbox call refused", "err", err)
		respondPlain(tx, req, 400, "Bad Request", log)
		return nil, false
	}
	port, err := s.o.RTPPort()
	if err != nil {
		log.Error("opening an RTP socket for the mailbox", "err", err)
		respondPlain(tx, req, 503, "Service Unavailable", log)
		return nil, false
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ss := &session{s: s, d: d, us: s.o.Contact(strings.ToLower(req.Transport())), ctx: ctx, cancel: cancel, acked: make(chan struct{}), log: log, port: port}
	ss.ep = newEndpoint(port.RTP(), o, uint32(randUint64()))
	ss.ep.log = log
	s.mu.Lock()
	if s.closed || len(s.sessions) >= MaxCalls {
		full := !s.closed
		s.mu.Unlock()
		if full {
			log.Warn("mailbox call refused: too many mailbox calls at once", "max", MaxCalls)
		}
		ss.release()
		cancel(nil)
		respondPlain(tx, req, 503, "Service Unavailable", log)
		return nil, false
	}
	s.sessions[d.callID] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	go ss.ep.receive()

	res := d.response(req, 200, "OK", ss.us)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
	res.SetBody(answerSDP(ss.ep.local(), o, randUint64()>>2))
	if err := tx.Respond(res); err != nil {
		log.Info("answering a mailbox call", "err", err)
	}
	if !sip.IsReliable(req.Transport()) {
		go ss.retransmit(tx, res)
	}
	return ss, true
}

// retransmit repeats our 2xx until the ACK (RFC 3261 §13.3.1.4).
func (ss *session) retransmit(tx sip.ServerTransaction, res *sip.Response) {
	interval := sip.T1
	deadline := time.After(64 * sip.T1)
	for {
		t := time.NewTimer(interval)
		select {
		case <-ss.acked:
			t.Stop()
			return
		case <-ss.ctx.Done():
			t.Stop()
			return
		case <-deadline:
			t.Stop()
			ss.log.Info("the caller never acknowledged the mailbox's answer")
			ss.hangup()
			return
		case <-t.C:
			_ = tx.Respond(res)
			interval = min(2*interval, sip.T2)
		}
	}
}

// inDialog handles a request of the session's dialog.
func (ss *session) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	switch req.Method {
	case sip.ACK:
		ss.once.Do(func() { close(ss.acked) })
	case sip.BYE:
		respondPlain(tx, req, 200, "OK", ss.log)
		ss.cancel(errHangup)
	case sip.CANCEL:
		respondPlain(tx, req, 200, "OK", ss.log)
	case sip.INFO:
		// DTMF by SIP INFO (application/dtmf-relay), as some phones send.
		if k := infoDigit(req.Body()); k != 0 {
			select {
			case ss.ep.keys <- k:
			default:
			}
		}
		respondPlain(tx, req, 200, "OK", ss.log)
	case sip.INVITE:
		// A re-INVITE (hold, session refresh): not supported.
		respondPlain(tx, req, 488, "Not Acceptable Here", ss.log)
	default:
		respondPlain(tx, req, 200, "OK", ss.log)
	}
}

// infoDigit reads the key of an application/dtmf-relay body
// ("Signal=5"), 0 when there is none.
func infoDigit(body []byte) byte {
	for line := range strings.SplitSeq(string(body), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "signal") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) == 1 && strings.Contains("0123456789*#ABCD", v) {
			return v[0]
		}
	}
	return 0
}

// hangup ends the call from our side: BYE, once, unless the caller hung
// up. It also serves at shutdown, when the session's context has ended.
func (ss *session) hangup() {
	ss.mu.Lock()
	if ss.byUs || ss.hungUp() || ss.abandoned() {
		ss.mu.Unlock()
		return
	}
	ss.byUs = true
	ss.mu.Unlock()
	ss.cancel(nil)
	ss.s.bye(ss.d, ss.us, ss.log)
}

// finish forgets the session and closes its socket.
func (ss *session) finish() {
	ss.cancel(nil)
	ss.release()
	ss.s.mu.Lock()
	delete(ss.s.sessions, ss.d.callID)
	ss.s.mu.Unlock()
	if ss.done != nil {
		ss.done()
	}
	ss.s.wg.Done()
}

// release closes the RTP socket and gives its port back.
func (ss *session) release() {
	if err := ss.port.Release(); err != nil {
		ss.log.Debug("releasing the mailbox's RTP port", "err", err)
	}
}

// hungUp reports whether the caller ended the call.
func (ss *session) hungUp() bool { return errors.Is(context.Cause(ss.ctx), errHangup) }

func respondPlain(tx sip.ServerTransaction, req *sip.Request, code int, reason string, log *slog.Logger) {
	if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		log.Debug("responding", "code", code, "err", err)
	}
}
