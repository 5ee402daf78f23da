// Package registrar answers SIP REGISTER requests (RFC 3261 §10): it
// authenticates the phone, checks that it registers its own extension, and
// adds, refreshes, removes or lists the extension's contacts in the
// location service, which persists every change before the phone gets its
// 200 OK. The source address a REGISTER really came from is kept with each
// binding, and every answer goes back to that address (RFC 3581), so
// phones behind NAT stay reachable.
package registrar

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/nat"
	"github.com/twinpbx/twinpbx/pbx/regwire"
)

// Directory tells which extensions exist. The PBX implements it over the
// current config; it is called concurrently.
type Directory interface {
	Extension(number string) (config.Extension, bool)
}

// Authenticator checks digest credentials and, when it returns false, has
// already answered the request (see auth.Digest).
type Authenticator interface {
	Authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (user string, ok bool)
}

// Options configure a Registrar.
type Options struct {
	// Location keeps the bindings (and persists them before the 200 OK).
	Location *location.Service
	// Auth challenges and checks credentials (an *auth.Digest).
	Auth Authenticator
	// Directory says which extensions exist and their contact limits.
	Directory Directory
	// MinExpires, MaxExpires and DefaultExpires bound registrations
	// (defaults 60 s, 2 h, 1 h); whole seconds on the wire.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	Logger                                 *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Origin, when set, returns where a REGISTER really came from, as a
	// binding's Source ("udp:host:port"): the phone's own address when
	// the twin's forwarder passed it on (pbx.Options.Forwarded). Nil:
	// the request's transport and source.
	Origin func(*sip.Request) string
}

// DefaultMaxContacts bounds the devices of an extension whose config says 0.
const DefaultMaxContacts = 5

// Registrar serves REGISTER. It is safe for concurrent use.
type Registrar struct {
	loc                  *location.Service
	auth                 Authenticator
	dir                  Directory
	min, max, defaultExp time.Duration
	log                  *slog.Logger
	now                  func() time.Time
	origin               func(*sip.Request) string
	stripes              [64]sync.Mutex // per-AOR serialisation of check-then-write
	lastDate             atomic.Pointer[sipDate]
}

// New checks the options and returns the registrar.
func New(o Options) (*Registrar, error) {
	if o.Location == nil || o.Auth == nil || o.Directory == nil {
		return nil, errors.New("registrar needs a location service, an authenticator and a directory")
	}
	if o.MinExpires <= 0 {
		o.MinExpires = time.Minute
	}
	if o.MaxExpires <= 0 {
		o.MaxExpires = 2 * time.Hour
	}
	if o.DefaultExpires <= 0 {
		o.DefaultExpires = min(time.Hour, o.MaxExpires)
	}
	if o.MinExpires > o.MaxExpires || o.DefaultExpires < o.MinExpires || o.DefaultExpires > o.MaxExpires {
		return nil, fmt.Errorf("registration expiry bounds do not fit: min %v, default %v, max %v", o.MinExpires, o.DefaultExpires, o.MaxExpires)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Registrar{
		loc: o.Location, auth: o.Auth, dir: o.Directory,
		min: o.MinExpires, max: o.MaxExpires, defaultExp: o.DefaultExpires,
		log: o.Logger, now: o.Now, origin: o.Origin,
	}, nil
}

// regError is a final non-2xx answer with optional extra headers.
type regError struct {
	code   int
	reason string
	hdrs   []sip.Header
}

func (e *regError) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

func fail(code int, reason string, hdrs ...sip.Header) *regError {
	return &regError{code: code, reason: reason, hdrs: hdrs}
}

// ServeRegister handles one REGISTER; plug it into sipgo's srv.OnRegister.
//
// Order of checks: credentials first (401 via the authenticator), so an
// unauthenticated sender cannot tell an unknown extension from a wrong
// password (no extension enumeration); then 404 for a To user that is no
// extension and 403 when the authenticated user registers another one.
//
// A REGISTER with the Call-ID of a stored binding and a CSeq lower than or
// equal to the stored one is refused with 500 (RFC 3261 §10.3 step 7 says
// "fails" without naming a code) and changes nothing.
//
// The transaction is ended right after the final answer instead of being
// kept 32 s to absorb retransmissions (at high rates that costs about 1 GB).
// A retransmission that arrives later is a new transaction: its digest
// nonce-count is then already used, so the authenticator answers 401 with
// stale=true, and the phone re-sends with a fresh nonce and a higher CSeq.
func (r *Registrar) ServeRegister(req *sip.Request, tx sip.ServerTransaction) {
	defer tx.Terminate()
	user, ok := r.auth.Authenticate(req, tx, false)
	if !ok {
		return
	}
	res, err := r.register(req, user)
	if err != nil {
		var re *regError
		if !errors.As(err, &re) {
			r.log.Error("handling REGISTER", "err", err, "source", req.Source())
			re = fail(sip.StatusInternalServerError, "Server Internal Error")
		}
		res = sip.NewResponseFromRequest(req, re.code, re.reason, nil)
		for _, h := range re.hdrs {
			res.AppendHeader(h)
		}
	}
	nat.Symmetric(req, res)
	if err := tx.Respond(res); err != nil {
		r.log.Debug("sending REGISTER response", "err", err, "source", req.Source())
	}
}

// contact is one Contact of the request, checked and with its expiry.
type contact struct {
	uri     string
	expires time.Duration
	q       int
}

func (r *Registrar) register(req *sip.Request, user string) (*sip.Response, error) {
	to := req.To()
	if to == nil || to.Address.User == "" {
		return nil, fail(sip.StatusBadRequest, "Bad Request (To header without an extension)")
	}
	reg := registration{aor: to.Address.User}
	ext, err := r.extension(reg.aor, user, req.Source())
	if err != nil {
		return nil, err
	}
	callID := req.CallID()
	cseq := req.CSeq()
	if callID == nil || cseq == nil {
		return nil, fail(sip.StatusBadRequest, "Bad Request (missing Call-ID or CSeq)")
	}
	reg.callID, reg.cseq = string(*callID), cseq.SeqNo
	var contacts []contact
	if reg.wildcard, contacts, err = r.contacts(req); err != nil {
		return nil, err
	}
	reg.source = strings.ToLower(req.Transport()) + ":" + req.Source()
	if r.origin != nil {
		reg.source = r.origin(req)
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		reg.ua = h.Value()
	}
	now, live, err := r.store(ext, reg, contacts, nil)
	if err != nil {
		return nil, err
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, h := range r.ok(nil, reg.aor, now, live) {
		res.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	return res, nil
}

// ServeWire serves a REGISTER read by regwire from source (a binding's
// Source, "udp:host:port"), whose credentials were checked for user, and
// returns the answer's code and reason, and hdrs with the answer's headers
// beyond those regwire writes appended. It decides as ServeRegister does
// for the same request.
func (r *Registrar) ServeWire(req *regwire.Request, user, source string, hdrs []regwire.Header) (code int, reason string, _ []regwire.Header) {
	if req.ToUser == "" {
		return sip.StatusBadRequest, "Bad Request (To header without an extension)", hdrs
	}
	var room [2]contact // what phones send: one contact, room for two
	var bindings [4]location.Binding
	reg, now, live, err := r.serveWire(req, user, source, room[:0], bindings[:0])
	if err != nil {
		var re *regError
		if !errors.As(err, &re) {
			r.log.Error("handling REGISTER", "err", err, "source", source)
			re = fail(sip.StatusInternalServerError, "Server Internal Error")
		}
		for _, h := range re.hdrs {
			hdrs = append(hdrs, regwire.Header{Name: h.Name(), Value: h.Value()})
		}
		return re.code, re.reason, hdrs
	}
	return sip.StatusOK, "OK", r.ok(hdrs, reg.aor, now, live)
}

// serveWire reads req's registration, with its contacts appended to
// contacts, and applies it; the AOR's bindings after it are appended to
// live.
func (r *Registrar) serveWire(req *regwire.Request, user, source string, contacts []contact, live bindingSet) (registration, time.Time, bindingSet, error) {
	reg := registration{aor: req.ToUser, callID: req.CallID, cseq: req.Seq, source: source, ua: req.UserAgent}
	ext, err := r.extension(reg.aor, user, source)
	if err != nil {
		return reg, time.Time{}, nil, err
	}
	reg.wildcard, contacts, err = r.readContacts(contacts, req.Expires, req.HasExpires, len(req.Contacts),
		func(i int) (*sip.ContactHeader, error) { return &req.Contacts[i], nil })
	if err != nil {
		return reg, time.Time{}, nil, err
	}
	now, live, err := r.store(ext, reg, contacts, live)
	return reg, now, live, err
}

// registration is what one REGISTER asks for, beside its contacts (kept
// apart so that room for them on a caller's stack stays there).
type registration struct {
	aor, callID string
	cseq        uint32
	// wildcard: "Contact: *"; else the contacts (none: a query).
	wildcard   bool
	source, ua string
}

// extension returns the extension aor names, or the 404 or 403 to answer.
func (r *Registrar) extension(aor, user, source string) (config.Extension, error) {
	ext, ok := r.dir.Extension(aor)
	if !ok {
		return ext, fail(sip.StatusNotFound, "Not Found")
	}
	if user != aor {
		r.log.Warn("registering another extension refused", "user", user, "aor", aor, "source", source)
		return ext, fail(sip.StatusForbidden, "Forbidden (credentials are for another extension)")
	}
	return ext, nil
}

// store applies reg with its contacts to the location service and returns
// the time it did and live with the AOR's bindings after it appended
// (those of this box; other boxes' when it has none).
func (r *Registrar) store(ext config.Extension, reg registration, contacts []contact, live bindingSet) (time.Time, bindingSet, error) {
	aor := reg.aor
	mu := &r.stripes[stripe(aor)]
	mu.Lock()
	defer mu.Unlock()

	now := r.now()
	max := ext.MaxContacts
	if max <= 0 {
		max = DefaultMaxContacts
	}
	var room [2]change
	j, live, err := r.apply(room[:0], live, reg, contacts, max, now)
	if err != nil {
		if undoErr := j.undo(r.loc); undoErr != nil {
			r.log.Error("undoing a partly applied REGISTER", "aor", aor, "err", undoErr)
		}
		var re *regError
		if errors.As(err, &re) {
			return now, nil, err
		}
		r.log.Error("saving registration", "aor", aor, "err", err)
		return now, nil, fail(sip.StatusInternalServerError, "Server Internal Error (registration not saved)")
	}
	for _, c := range j {
		switch {
		case !c.made:
			r.log.Info("unregistered", "aor", aor, "contact", c.contact)
		case !c.had:
			r.log.Info("registered", "aor", aor, "contact", c.contact, "source", c.after.Source, "expires", c.after.Expires.Sub(now).Round(time.Second))
		}
	}
	return now, live, nil
}

// contacts reads the Contact headers: wildcard is true for "Contact: *"
// (valid only alone and with Expires: 0); an empty list is a query.
func (r *Registrar) contacts(req *sip.Request) (wildcard bool, out []contact, err error) {
	expires, hasExpires := "", false
	if h := req.GetHeader("Expires"); h != nil {
		expires, hasExpires = h.Value(), true
	}
	hs := req.GetHeaders("Contact")
	return r.readContacts(nil, expires, hasExpires, len(hs), func(i int) (*sip.ContactHeader, error) {
		if ch, ok := hs[i].(*sip.ContactHeader); ok {
			return ch, nil
		}
		// Built in code rather than parsed from the wire.
		ch := &sip.ContactHeader{}
		if v := strings.TrimSpace(hs[i].Value()); v == "*" {
			ch.Address.Wildcard = true
		} else if _, err := sip.ParseAddressValue(v, &ch.Address, &ch.Params); err != nil {
			return nil, fail(sip.StatusBadRequest, "Bad Request (unreadable Contact header)")
		}
		return ch, nil
	})
}

// readContacts checks the n Contact headers of a REGISTER (each one
// contact or "*", the i-th given by at) with the value of its Expires
// header, if it has one, whichever parser read them, and appends the
// contacts to out.
func (r *Registrar) readContacts(out []contact, expires string, hasExpires bool, n int, at func(i int) (*sip.ContactHeader, error)) (wildcard bool, _ []contact, err error) {
	headerExp := r.defaultExp
	if hasExpires {
		if headerExp, err = parseExpires(expires); err != nil {
			return false, nil, fail(sip.StatusBadRequest, "Bad Request (invalid Expires header)")
		}
	}
	for i := range n {
		ch, err := at(i)
		if err != nil {
			return false, nil, err
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		c, err := r.contact(ch, headerExp)
		if err != nil {
			return false, nil, err
		}
		out = append(out, c)
	}
	if wildcard && (n != 1 || !hasExpires || headerExp != 0) {
		return false, nil, wildcardMisuse(n)
	}
	return wildcard, out, nil
}

// wildcardMisuse is the 400 for a "Contact: *" that is not alone among n
// contacts or comes without Expires: 0.
func wildcardMisuse(n int) error {
	if n != 1 {
		return fail(sip.StatusBadRequest, "Bad Request (Contact * must stand alone)")
	}
	return fail(sip.StatusBadRequest, "Bad Request (Contact * needs Expires: 0)")
}

// contact checks one Contact (not the wildcard) and gives its expiry:
// its own expires parameter, else headerExp.
func (r *Registrar) contact(ch *sip.ContactHeader, headerExp time.Duration) (contact, error) {
	c := contact{uri: uriString(&ch.Address), expires: headerExp}
	if s := strings.ToLower(ch.Address.Scheme); s != "sip" && s != "sips" {
		return c, fail(sip.StatusBadRequest, "Bad Request (Contact must be a sip: or sips: URI)")
	}
	if v, ok := ch.Params.Get("expires"); ok {
		d, err := parseExpires(v)
		if err != nil {
			return c, fail(sip.StatusBadRequest, "Bad Request (invalid expires parameter)")
		}
		c.expires = d
	}
	if v, ok := ch.Params.Get("q"); ok {
		q, err := strconv.ParseFloat(v, 64)
		if err != nil || q < 0 || q > 1 || math.IsNaN(q) {
			return c, fail(sip.StatusBadRequest, "Bad Request (invalid q parameter)")
		}
		c.q = int(math.Round(q * 1000))
	}
	if c.expires != 0 && c.expires < r.min {
		return c, fail(sip.StatusIntervalToBrief, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(r.min/time.Second))))
	}
	c.expires = min(c.expires, r.max)
	return c, nil
}

// uriBufs holds the buffers URIs are written in.
var uriBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// uriString is u.String() in one allocation of the string's own size
// (sipgo's grows a builder several times).
func uriString(u *sip.Uri) string {
	b := uriBufs.Get().(*bytes.Buffer)
	b.Reset()
	u.StringWrite(b)
	s := b.String()
	uriBufs.Put(b)
	return s
}

// parseExpires reads delta-seconds; values beyond 2^32-1 count as that
// (RFC 3261 §20.19), which MaxExpires then caps.
func parseExpires(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) && s != "" {
			return math.MaxUint32 * time.Second, nil
		}
		return 0, err
	}
	return time.Duration(n) * time.Second, nil
}

// apply makes the bindings what the request asks for, and returns j with
// each change appended, so that a failure half-way can be undone (also
// when it returns an error), and live with the AOR's bindings after it
// appended. Slices are passed and returned by value so that room the
// caller gives stays on its stack.
func (r *Registrar) apply(j journal, live bindingSet, reg registration, cs []contact, max int, now time.Time) (journal, bindingSet, error) {
	aor, callID, cseq, wildcard := reg.aor, reg.callID, reg.cseq, reg.wildcard
	// RFC 3261 §10.3 step 7, checked for every contact before anything
	// is written.
	existing := bindingSet(r.loc.LookupAppend(live, aor))
	check := func(uri string) error {
		if i := existing.find(uri); i >= 0 && existing[i].CallID == callID && cseq <= existing[i].CSeq {
			return fail(sip.StatusInternalServerError, "Server Internal Error (CSeq not above the registration's)")
		}
		return nil
	}
	if wildcard {
		for _, b := range existing {
			if err := check(b.Contact); err != nil {
				return j, existing, err
			}
		}
		for len(existing) > 0 {
			var err error
			if j, err = j.remove(r.loc, existing[0]); err != nil {
				return j, existing, err
			}
			existing = existing.without(0)
		}
		return j, existing, nil
	}
	for _, c := range cs {
		if err := check(c.uri); err != nil {
			return j, existing, err
		}
	}
	if len(cs) > max {
		return j, existing, fail(sip.StatusForbidden, fmt.Sprintf("Forbidden (at most %d contacts per extension)", max))
	}
	source, ua := reg.source, reg.ua
	for _, c := range cs {
		i := existing.find(c.uri)
		if c.expires == 0 {
			if i >= 0 {
				var err error
				if j, err = j.remove(r.loc, existing[i]); err != nil {
					return j, existing, err
				}
				existing = existing.without(i)
			}
			continue
		}
		var old location.Binding
		if i >= 0 {
			old = existing[i]
		}
		// The binding's strings are its own (a request read by regwire
		// is one string, which a substring would keep alive as long as
		// the binding), or the previous binding's where equal, so a
		// refresh allocates none.
		b := location.Binding{
			AOR: keep(old.AOR, aor), Contact: c.uri, Source: keep(old.Source, source),
			CallID: keep(old.CallID, callID), CSeq: cseq,
			Expires: now.Add(c.expires), Q: c.q, UserAgent: keep(old.UserAgent, ua), Updated: now,
		}
		ch := change{aor: aor, contact: c.uri, after: b, made: true}
		if i >= 0 {
			ch.before, ch.had = old, true
		}
		// Full: the oldest devices not in this request give way (a phone
		// that rebooted onto a new port must not be locked out by its
		// own stale binding). More than one goes when the limit was
		// lowered in the config.
		err := r.loc.Put(b, max)
		for errors.Is(err, location.ErrTooManyContacts) {
			v := existing.oldest(cs)
			if v < 0 {
				return j, existing, fail(sip.StatusForbidden, fmt.Sprintf("Forbidden (at most %d contacts per extension)", max))
			}
			victim := existing[v]
			r.log.Info("contact limit reached: dropping the oldest binding", "aor", aor, "contact", victim.Contact, "max", max)
			if j, err = j.remove(r.loc, victim); err != nil {
				return j, existing, err
			}
			existing = existing.without(v)
			err = r.loc.Put(b, max)
		}
		if err != nil {
			return j, existing, err
		}
		j = append(j, ch)
		if i = existing.find(c.uri); i >= 0 {
			existing[i] = b
		} else {
			existing = append(existing, b)
		}
	}
	return j, existing, nil
}

// keep returns old if it equals s, else a copy of s.
func keep(old, s string) string {
	if old == s {
		return old
	}
	return strings.Clone(s)
}

// bindingSet is the live bindings of one AOR (a handful), by contact.
type bindingSet []location.Binding

func (s bindingSet) find(contact string) int {
	for i := range s {
		if s[i].Contact == contact {
			return i
		}
	}
	return -1
}

func (s bindingSet) without(i int) bindingSet { return append(s[:i], s[i+1:]...) }

// oldest is the index of the oldest binding whose contact is not in
// keep, -1 if there is none.
func (s bindingSet) oldest(keep []contact) int {
	out := -1
	for i, b := range s {
		if slices.ContainsFunc(keep, func(c contact) bool { return c.uri == b.Contact }) {
			continue
		}
		if out < 0 || b.Updated.Before(s[out].Updated) || (b.Updated.Equal(s[out].Updated) && b.Contact < s[out].Contact) {
			out = i
		}
	}
	return out
}

// change is one applied write: had is false for a new binding, made is
// false for a removal.
type change struct {
	aor, contact string
	before       location.Binding
	had          bool
	after        location.Binding
	made         bool
}

type journal []change

func (j journal) remove(loc *location.Service, b location.Binding) (journal, error) {
	if err := loc.Remove(b.AOR, b.Contact); err != nil {
		return j, err
	}
	return append(j, change{aor: b.AOR, contact: b.Contact, before: b, had: true}), nil
}

// undo reverts the changes in reverse order.
func (j journal) undo(loc *location.Service) error {
	var errs []error
	for i := len(j) - 1; i >= 0; i-- {
		c := j[i]
		var err error
		if !c.had {
			err = loc.Remove(c.aor, c.contact)
		} else {
			err = loc.Put(c.before, 0)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring %s of %s: %w", c.contact, c.aor, err))
		}
	}
	return errors.Join(errs...)
}

// ok appends to hs the headers of the 200 OK beyond those copied from the
// request: every live contact of aor with its remaining time, and Date.
// live holds the AOR's bindings as the REGISTER left them; when none of
// them is this box's, the table is asked again (other boxes' bindings
// are listed then, as Lookup returns them).
func (r *Registrar) ok(hs []regwire.Header, aor string, now time.Time, live bindingSet) []regwire.Header {
	own := slices.ContainsFunc(live, func(b location.Binding) bool { return b.Holder == "" })
	if own {
		location.SortBindings(live)
	} else {
		var room [4]location.Binding
		live = r.loc.LookupAppend(room[:0], aor)
	}
	for _, b := range live {
		if own && b.Holder != "" {
			continue
		}
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		if left < 1 {
			continue
		}
		v := "<" + b.Contact + ">;expires=" + strconv.Itoa(left)
		if b.Q > 0 {
			v += ";q=" + strconv.FormatFloat(float64(b.Q)/1000, 'f', -1, 64)
		}
		hs = append(hs, regwire.Header{Name: "Contact", Value: v})
	}
	return append(hs, regwire.Header{Name: "Date", Value: r.date(now)})
}

// dateFormat is the SIP-date of RFC 3261 §20.17 (RFC 1123, GMT).
const dateFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// sipDate is a Date value and the second it names.
type sipDate struct {
	sec  int64
	text string
}

// date returns the Date value for now, written once per second.
func (r *Registrar) date(now time.Time) string {
	sec := now.Unix()
	if d := r.lastDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &sipDate{sec: sec, text: now.UTC().Format(dateFormat)}
	r.lastDate.Store(d)
	return d.text
}

// stripe picks the lock of aor by its FNV-1a hash (inline: hash/fnv
// allocates on every call).
func stripe(aor string) int {
	h := uint32(2166136261)
	for i := 0; i < len(aor); i++ {
		h = (h ^ uint32(aor[i])) * 16777619
	}
	return int(h % 64)
}
