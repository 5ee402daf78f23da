package b2bua

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// replaces names a dialog, as the Replaces header (RFC 3891) and the
// Replaces parameter of a Refer-To URI do.
type replaces struct {
	CallID  string
	ToTag   string
	FromTag string
	// EarlyOnly asks that only a dialog not yet answered be replaced.
	EarlyOnly bool
}

// parseReplaces reads a Replaces value: "call-id;to-tag=x;from-tag=y",
// with optional early-only. Both tags are required.
func parseReplaces(value string) (replaces, error) {
	parts := strings.Split(value, ";")
	r := replaces{CallID: strings.TrimSpace(parts[0])}
	if r.CallID == "" {
		return replaces{}, fmt.Errorf("replaces value %q: no Call-ID", value)
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "to-tag":
			r.ToTag = strings.TrimSpace(v)
		case "from-tag":
			r.FromTag = strings.TrimSpace(v)
		case "early-only":
			r.EarlyOnly = true
		}
	}
	if r.ToTag == "" || r.FromTag == "" {
		return replaces{}, fmt.Errorf("replaces value %q: to-tag and from-tag are required", value)
	}
	return r, nil
}

// referReplaces finds the Replaces parameter among the headers of the URI
// in a Refer-To value (…?Replaces=<escaped value>&…) and parses it. It
// reports false when there is none. The value is taken from the text
// itself, so that phones that leave ';' and '=' unescaped are understood
// too.
func referReplaces(value string) (replaces, bool, error) {
	uri := value
	if i := strings.IndexByte(uri, '<'); i >= 0 {
		uri = uri[i+1:]
		if j := strings.IndexByte(uri, '>'); j >= 0 {
			uri = uri[:j]
		}
	}
	_, hdrs, ok := strings.Cut(uri, "?")
	if !ok {
		return replaces{}, false, nil
	}
	for h := range strings.SplitSeq(hdrs, "&") {
		k, v, _ := strings.Cut(h, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "Replaces") {
			continue
		}
		raw, err := url.PathUnescape(v)
		if err != nil {
			return replaces{}, true, fmt.Errorf("unescaping the Replaces of a Refer-To: %w", err)
		}
		r, err := parseReplaces(raw)
		return r, true, err
	}
	return replaces{}, false, nil
}

// matches reports whether d is the dialog r names. A phone names its own
// dialog with the PBX, and phones disagree on which tag is the "to-tag"
// (RFC 3891 wants the recipient's view, RFC 5589's examples the
// target's): either way round is accepted; Call-ID and both tags must
// match.
func (r replaces) matches(d *Dialog) bool {
	if d.CallID != r.CallID || d.RemoteTag == "" {
		return false
	}
	return (r.ToTag == d.LocalTag && r.FromTag == d.RemoteTag) ||
		(r.ToTag == d.RemoteTag && r.FromTag == d.LocalTag)
}

var errNoReplaced = errors.New("the dialog named by Replaces does not exist")

// findReplaced returns the call and side of the leg r names.
func (b *B2BUA) findReplaced(r replaces) (*call, Leg, error) {
	b.mu.Lock()
	c := b.legs[r.CallID]
	b.mu.Unlock()
	if c == nil {
		return nil, 0, errNoReplaced
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, side := range []Leg{LegA, LegB} {
		if l := c.legs[side]; l != nil && r.matches(&l.Dialog) {
			return c, side, nil
		}
	}
	return nil, 0, errNoReplaced
}
