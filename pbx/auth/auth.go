// Package auth is the server side of SIP digest authentication (RFC 3261
// §22, RFC 7616 digest with qop=auth, RFC 8760 SHA-256 and MD5): it challenges
// requests, checks the answers of phones against their extension secrets,
// and brakes password guessing. The registrar and the B2BUA call
// Authenticate on every request that needs an authenticated user.
//
// Nonces are stateless (issue time, salt and an HMAC under a key the twin
// shares), so a challenge issued before a restart or by the twin is still
// answered correctly. The only state is a bounded nonce-count table
// against replays and a bounded failure table per source address.
//
// Brute-force brake: a source IP address with MaxFailures wrong passwords
// or unknown users within FailureWindow is answered 403 for BlockFor,
// whatever it sends. Phones sharing one public address behind NAT share
// that count, so a single misconfigured phone there can lock out its
// neighbours for BlockFor; the defaults (10 a minute, 5 minutes) are far
// above what a phone retrying a wrong password produces.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/nat"
	"github.com/twinpbx/twinpbx/pbx/siplog"
)

// Options configure a Digest authenticator.
type Options struct {
	// Realm of the challenges (required).
	Realm string
	// Key signs the stateless nonces (HMAC-SHA256); random per box, later
	// shared by the twin. At least 16 bytes; empty: a random key is made,
	// so nonces then do not survive a restart.
	Key []byte
	// NonceLifetime: after this, a correct answer gets a fresh challenge
	// with stale=true (default 5 minutes).
	NonceLifetime time.Duration
	// Secrets returns the digest password of a user (required).
	Secrets func(user string) (secret string, ok bool)
	Logger  *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Origin, when set, returns where a request really came from
	// ("transport:host:port"): a phone's own address when the twin's
	// forwarder passed its request on (pbx.Options.Forwarded). Nil: the
	// request's source. The failure brake counts per origin host.
	Origin func(*sip.Request) string

	// MaxFailures failed answers (wrong password or unknown user) from one
	// source IP address within FailureWindow get that address refused with
	// 403 for BlockFor. Defaults: 10 within 1 minute, refused 5 minutes.
	MaxFailures   int
	FailureWindow time.Duration
	BlockFor      time.Duration
	// NonceTable bounds how many nonces' counts are remembered against
	// replay (default 16384).
	NonceTable int
	// Algorithms are offered as one challenge each, in this order
	// (RFC 8760: most preferred first): "SHA-256" and/or "MD5". Default:
	// MD5 alone. Measured: sipp 3.6.1 answers only the topmost challenge
	// and gives up on SHA-256; baresip 1.0.0 (libre) fails to register
	// as soon as any challenge names SHA-256, even after an MD5 one. Set
	// {"SHA-256", "MD5"} where every phone is RFC 8760-aware. Answers
	// are accepted in either algorithm whatever is offered.
	Algorithms []string
}

// Digest authenticates SIP requests. It is safe for concurrent use.
type Digest struct {
	realm    string
	lifetime time.Duration
	secrets  func(string) (string, bool)
	log      *slog.Logger
	warn     *slog.Logger // rate-limited, for failures a scanner can provoke
	now      func() time.Time
	origin   func(*sip.Request) string
	nonces   nonces
	nc       *ncTable
	brake    *brake
	algos    []challengeText // one per offered algorithm, in order
}

// challengeText is a WWW-Authenticate (or Proxy-Authenticate) value
// around its nonce, built once: head + nonce + tail (or staleTail).
type challengeText struct {
	head, tail, staleTail string
}

func newChallengeText(realm, algo string) challengeText {
	return challengeText{
		head:      "Digest realm=" + strconv.Quote(realm) + `, nonce="`,
		tail:      `", algorithm=` + algo + `, qop="auth"`,
		staleTail: `", stale=true, algorithm=` + algo + `, qop="auth"`,
	}
}

func (c challengeText) with(nonce []byte, stale bool) string {
	if stale {
		return c.head + string(nonce) + c.staleTail
	}
	return c.head + string(nonce) + c.tail
}

// New checks the options and returns the authenticator.
func New(o Options) (*Digest, error) {
	if o.Realm == "" {
		return nil, errors.New("digest authentication needs a realm")
	}
	if o.Secrets == nil {
		return nil, errors.New("digest authentication needs a source of secrets")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case len(o.Key) == 0:
		o.Key = make([]byte, 32)
		_, _ = rand.Read(o.Key)
		o.Logger.Warn("no nonce key given: using a random one, challenges will not survive a restart")
	case len(o.Key) < 16:
		return nil, fmt.Errorf("the nonce key has %d bytes, want at least 16", len(o.Key))
	}
	if o.NonceLifetime <= 0 {
		o.NonceLifetime = 5 * time.Minute
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 10
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = time.Minute
	}
	if o.BlockFor <= 0 {
		o.BlockFor = 5 * time.Minute
	}
	if o.NonceTable <= 0 {
		o.NonceTable = 16384
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = []string{"MD5"}
	}
	var algos []challengeText
	for _, a := range o.Algorithms {
		a = strings.ToUpper(a)
		if a != "MD5" && a != "SHA-256" {
			return nil, fmt.Errorf("digest algorithm %q: want MD5 or SHA-256", a)
		}
		algos = append(algos, newChallengeText(o.Realm, a))
	}
	return &Digest{
		realm:    o.Realm,
		lifetime: o.NonceLifetime,
		secrets:  o.Secrets,
		origin:   o.Origin,
		log:      o.Logger,
		warn: slog.New(siplog.New(o.Logger.Handler(), siplog.Options{
			Burst: 10, Interval: time.Minute, Now: o.Now,
		})),
		now:    o.Now,
		nonces: newNonces(o.Key, o.Realm),
		nc:     newNCTable(o.NonceTable),
		brake:  newBrake(o.MaxFailures, o.FailureWindow, o.BlockFor, 4096),
		algos:  algos,
	}, nil
}

// Realm returns the realm the authenticator challenges for.
func (d *Digest) Realm() string { return d.realm }

// outcome of checking one request.
type outcome int

const (
	accept    outcome = iota
	challenge         // 401/407 with a fresh nonce
	stale             // 401/407 with a fresh nonce and stale=true
	failed            // wrong user or password: counted, then challenged
	malformed         // 400
)

// Authenticate checks the Authorization (proxy=false) or
// Proxy-Authorization (proxy=true) header of req. On success it returns the
// authenticated user name and true. Otherwise it has already answered req
// through tx (as Verify decides) and returns false.
//
// The caller ends the transaction (Authenticate only responds).
func (d *Digest) Authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (user string, ok bool) {
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	hs := req.GetHeaders(name)
	values := make([]string, len(hs))
	for i, h := range hs {
		values[i] = h.Value()
	}
	v := d.Verify(Request{
		Method: string(req.Method), Recipient: &req.Recipient, Credentials: values,
		Host: d.sourceHost(req), Source: req.Source(),
	}, proxy)
	if v.OK {
		return v.User, true
	}
	res := sip.NewResponseFromRequest(req, v.Code, v.Reason, nil)
	nat.Symmetric(req, res)
	for _, c := range v.Challenges {
		res.AppendHeader(sip.NewHeader(v.ChallengeHeader, c))
	}
	if err := tx.Respond(res); err != nil {
		d.log.Debug("sending authentication response", "code", v.Code, "err", err)
	}
	return "", false
}

// Request is what Verify needs of a request, whichever parser read it.
type Request struct {
	Method    string
	Recipient *sip.Uri
	// RecipientText, when set, is the Request-URI as sent: a digest uri
	// equal to it matches without being parsed.
	RecipientText string
	// Credentials are the values of its Authorization (or
	// Proxy-Authorization) headers.
	Credentials []string
	// Host is the address the failure brake counts for (the origin's
	// host when the request was forwarded); Source names the sender in
	// logs.
	Host, Source string
}

// Verdict is what Verify decided about a request.
type Verdict struct {
	// OK: the credentials are good, for User.
	OK   bool
	User string
	// Otherwise the request is answered with Code and Reason and, for
	// 401 and 407, one ChallengeHeader per value of Challenges.
	Code            int
	Reason          string
	ChallengeHeader string
	Challenges      []string
}

// Verify checks the credentials of r and, when they are not good, says
// how to answer it:
//   - no credentials for our realm, a nonce we did not issue, an algorithm
//     or qop we did not offer: 401/407 with a fresh challenge;
//   - correct answer on an expired nonce, or a nonce-count already used:
//     401/407 with stale=true (the phone retries without asking the user);
//   - wrong password or unknown user: logged at WARN (rate-limited) and
//     401/407 with a fresh challenge, so the phone shows "auth failed";
//   - a header that cannot be parsed, lacks fields, or whose uri is not
//     the Request-URI: 400;
//   - a source address with too many recent failures: 403.
//
// A nonce-count it accepts is used up: a request is verified once.
func (d *Digest) Verify(r Request, proxy bool) Verdict {
	now := d.now()
	if d.brake.blocked(r.Host, now) {
		return Verdict{Code: sip.StatusForbidden, Reason: "Forbidden (too many failed authentications)"}
	}
	user, res, why := d.check(r, proxy, now)
	switch res {
	case accept:
		return Verdict{OK: true, User: user}
	case malformed:
		d.log.Debug("malformed credentials", "source", r.Source, "reason", why)
		return Verdict{Code: sip.StatusBadRequest, Reason: "Bad Request (" + why + ")"}
	case failed:
		d.warn.Warn("digest authentication failed", "user", user, "source", r.Source, "reason", why)
		if d.brake.fail(r.Host, now) {
			d.warn.Warn("too many failed authentications: refusing the source for a while", "source", r.Host)
		}
		return d.challenge(proxy, now, false)
	case stale:
		return d.challenge(proxy, now, true)
	default:
		if why != "" {
			d.log.Debug("challenging", "source", r.Source, "reason", why)
		}
		return d.challenge(proxy, now, false)
	}
}

func (d *Digest) check(r Request, proxy bool, now time.Time) (string, outcome, string) {
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	var cred credentials
	found, unreadable := false, false
	for _, v := range r.Credentials {
		v = strings.TrimSpace(v)
		if !isDigest(v) {
			continue
		}
		c, err := parseCredentials(v)
		if err != nil {
			unreadable = true
			continue
		}
		if c.realm == d.realm {
			cred, found = c, true
			break
		}
	}
	if !found {
		if unreadable {
			return "", malformed, "unreadable " + name + " header"
		}
		return "", challenge, ""
	}
	if cred.username == "" || cred.nonce == "" || cred.uri == "" || cred.response == "" {
		return cred.username, malformed, "credentials lack username, nonce, uri or response"
	}
	algo := strings.ToUpper(cred.algorithm)
	if algo != "" && algo != "MD5" && algo != "SHA-256" {
		return cred.username, challenge, "algorithm " + cred.algorithm + " not offered"
	}
	if cred.userhash {
		return cred.username, challenge, "userhash not offered"
	}
	qop := false
	switch strings.ToLower(cred.qop) {
	case "":
	case "auth":
		if cred.cnonce == "" || cred.nc == 0 {
			return cred.username, malformed, "qop=auth without cnonce or nc"
		}
		qop = true
	default:
		return cred.username, challenge, "qop " + cred.qop + " not offered"
	}
	if (r.RecipientText == "" || cred.uri != r.RecipientText) && !uriMatches(cred.uri, r.Recipient) {
		return cred.username, malformed, "digest uri is not the Request-URI"
	}
	issued, id, err := d.nonces.verify(cred.nonce)
	if err != nil || issued.After(now.Add(time.Minute)) {
		return cred.username, challenge, "nonce not ours"
	}
	secret, known := d.secrets(cred.username)
	if !known {
		// Computed anyway, so an unknown user costs as much as a known one.
		secret = "\x00unknown"
	}
	var want [64]byte
	n := digestInput{
		sha256: algo == "SHA-256", user: cred.username, realm: d.realm, secret: secret,
		method: r.Method, uri: cred.uri, nonce: cred.nonce,
		qop: qop, nc: cred.nc, cnonce: cred.cnonce,
	}.expected(&want)
	match := subtle.ConstantTimeCompare([]byte(strings.ToLower(cred.response)), want[:n]) == 1
	switch {
	case !known:
		return cred.username, failed, "unknown user"
	case !match:
		return cred.username, failed, "wrong password"
	}
	if now.Sub(issued) > d.lifetime {
		return cred.username, stale, "nonce expired"
	}
	nc := uint32(1) // an answer without qop uses its nonce once
	if qop {
		nc = cred.nc
	}
	if !d.nc.use(id, issued, nc) {
		return cred.username, stale, "nonce count reused"
	}
	return cred.username, accept, ""
}

// challenge is a 401/407 with one challenge per configured algorithm,
// all sharing one fresh nonce (RFC 8760 §2.4).
func (d *Digest) challenge(proxy bool, now time.Time, isStale bool) Verdict {
	v := Verdict{Code: sip.StatusUnauthorized, Reason: "Unauthorized", ChallengeHeader: "WWW-Authenticate"}
	if proxy {
		v.Code, v.Reason, v.ChallengeHeader = sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	var text [nonceTextLen]byte
	nonce := d.nonces.issue(now, &text)
	v.Challenges = make([]string, len(d.algos))
	for i, c := range d.algos {
		v.Challenges[i] = c.with(nonce, isStale)
	}
	return v
}

// sourceHost is the host a request came from: its origin's when an
// Origin is set.
func (d *Digest) sourceHost(req *sip.Request) string {
	src := req.Source()
	if d.origin != nil {
		src = d.origin(req)
		if _, hp, ok := strings.Cut(src, ":"); ok {
			src = hp
		}
	}
	host, _, err := net.SplitHostPort(src)
	if err != nil {
		return src
	}
	return host
}

// uriMatches compares the digest uri with the Request-URI by scheme, user,
// host and port (RFC 7616 §3.4.6 asks for the same resource; parameters
// are ignored, since phones differ in which ones they repeat).
func uriMatches(s string, r *sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return false
	}
	return strings.EqualFold(scheme(u.Scheme), scheme(r.Scheme)) &&
		u.User == r.User &&
		strings.EqualFold(strings.Trim(u.Host, "[]"), strings.Trim(r.Host, "[]")) &&
		port(u) == port(*r)
}

func scheme(s string) string {
	if s == "" {
		return "sip"
	}
	return s
}

func port(u sip.Uri) int {
	if u.Port != 0 {
		return u.Port
	}
	if strings.EqualFold(u.Scheme, "sips") {
		return 5061
	}
	return 5060
}
