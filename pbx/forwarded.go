package pbx

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/siplog"
	"github.com/twinpbx/twinpbx/pbx/sipmark"
)

// forwarded checks the mark a twin's forwarder puts on the requests it
// passes on from phones that sent them to a box's own address
// (docs/CLUSTER.md, "Both boxes take requests"): the mark's claim is the
// phone's own transport and address, which the registrar records and the
// failure brake counts, as if the phone had sent the request straight to
// the VIP. Every other answer (digest, 423, ...) is unchanged, and the
// answers go back through the forwarder (its Via).
type forwarded struct {
	m   *sipmark.Marker
	log *slog.Logger // rate-limited: anyone can send a forged mark
}

func newForwarded(m *sipmark.Marker, log *slog.Logger) *forwarded {
	if m == nil {
		return nil
	}
	return &forwarded{m: m, log: slog.New(siplog.New(log.Handler(), siplog.Options{}))}
}

// errBadClaim: a mark made with the key whose claim is not an address.
var errBadClaim = errors.New("the mark's claim is not transport:address:port")

// check verifies req's mark and returns the origin it claims
// ("udp:192.0.2.50:5062"). ok false with a nil error: req has no mark.
func (f *forwarded) check(req *sip.Request) (origin string, ok bool, err error) {
	mk, err := f.m.Verify(req)
	if errors.Is(err, sipmark.ErrNotMarked) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	o, err := parseOrigin(mk.Claim)
	if err != nil {
		return "", false, err
	}
	return o, true, nil
}

// parseOrigin checks a claim and returns it in a binding's Source form.
func parseOrigin(claim string) (string, error) {
	tp, hp, ok := strings.Cut(claim, ":")
	if !ok || (tp != "udp" && tp != "tcp" && tp != "tls") {
		return "", errBadClaim
	}
	ap, err := netip.ParseAddrPort(hp)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().Zone() != "" {
		return "", errBadClaim
	}
	return tp + ":" + netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// origin is where req really came from: the mark's claim when it carries
// a valid one, else its own transport and source.
func (f *forwarded) origin(req *sip.Request) string {
	if f != nil {
		if o, ok, err := f.check(req); ok && err == nil {
			return o
		}
	}
	return strings.ToLower(req.Transport()) + ":" + req.Source()
}

// refuse answers 403 to a request whose mark does not verify (a forged
// or stale one, or one from an address that is not the twin's) and logs
// it; true when it did. A request without a mark passes.
func (f *forwarded) refuse(req *sip.Request, tx sip.ServerTransaction) bool {
	if f == nil {
		return false
	}
	_, _, err := f.check(req)
	if err == nil {
		return false
	}
	f.log.Warn("refused a request with a forged or stale forwarding mark", "method", string(req.Method),
		"source", req.Source(), "header", f.m.Header(), "err", err)
	if req.Method != sip.ACK {
		res := sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden (forwarding mark refused)", nil)
		if rerr := tx.Respond(res); rerr != nil {
			f.log.Debug("answering a refused forwarding mark", "err", fmt.Errorf("sending 403: %w", rerr))
		}
	}
	return true
}
