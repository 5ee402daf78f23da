package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// credentials are the fields of a Digest Authorization or
// Proxy-Authorization header that the authenticator uses (RFC 3261 §25.1
// digest-response, RFC 7616 §3.4). Other parameters are skipped.
type credentials struct {
	username, realm, nonce, uri, response string
	algorithm, cnonce, qop                string
	nc                                    uint32 // 0: not given
	userhash                              bool
}

// digestScheme starts a Digest header value (the scheme is case-insensitive).
const digestScheme = "digest"

// isDigest reports whether a header value is of the Digest scheme.
func isDigest(v string) bool {
	return len(v) > len(digestScheme) && strings.EqualFold(v[:len(digestScheme)], digestScheme) && isSpace(v[len(digestScheme)])
}

// parseCredentials reads a Digest header value: the scheme, then a comma
// separated list of name=value pairs whose value is a token or a quoted
// string. Names are case-insensitive; a name given twice keeps its last
// value. The strings returned share the memory of v unless a quoted value
// holds escapes: a REGISTER is checked on every refresh, and the general
// parsers allocate a buffer per header.
func parseCredentials(v string) (credentials, error) {
	var c credentials
	if !isDigest(v) {
		return c, errors.New("not a Digest header")
	}
	s := v[len(digestScheme):]
	for first := true; ; first = false {
		s = skipSpace(s)
		if s == "" {
			if first {
				return c, errors.New("no parameters")
			}
			return c, nil
		}
		if !first {
			if s[0] != ',' {
				return c, fmt.Errorf("want a comma before %q", clip(s))
			}
			s = skipSpace(s[1:])
		}
		n := tokenLen(s)
		if n == 0 {
			return c, fmt.Errorf("want a parameter name at %q", clip(s))
		}
		name := s[:n]
		s = skipSpace(s[n:])
		if s == "" || s[0] != '=' {
			return c, fmt.Errorf("parameter %q without a value", clip(name))
		}
		s = skipSpace(s[1:])
		var val string
		if s != "" && s[0] == '"' {
			var err error
			if val, s, err = quoted(s); err != nil {
				return c, fmt.Errorf("parameter %q: %w", clip(name), err)
			}
		} else {
			n := tokenLen(s)
			if n == 0 {
				return c, fmt.Errorf("parameter %q without a value", clip(name))
			}
			val, s = s[:n], s[n:]
		}
		if err := c.set(name, val); err != nil {
			return c, err
		}
	}
}

// set stores one parameter.
func (c *credentials) set(name, val string) error {
	var buf [16]byte
	if len(name) > len(buf) {
		return nil // no parameter we use is that long
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		buf[i] = b
	}
	switch string(buf[:len(name)]) {
	case "username":
		c.username = val
	case "realm":
		c.realm = val
	case "nonce":
		c.nonce = val
	case "uri":
		c.uri = val
	case "response":
		c.response = val
	case "algorithm":
		c.algorithm = val
	case "cnonce":
		c.cnonce = val
	case "qop":
		c.qop = val
	case "nc":
		n, err := strconv.ParseUint(val, 16, 32)
		if err != nil {
			return fmt.Errorf("nc %q is not a hex number of up to 8 digits", clip(val))
		}
		c.nc = uint32(n)
	case "userhash":
		c.userhash = strings.EqualFold(val, "true")
	}
	return nil
}

// quoted reads the quoted-string at the start of s (RFC 3261 §25.1) and
// returns its content, unescaped, and what follows it.
func quoted(s string) (val, rest string, err error) {
	escaped := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			escaped = true
			i++ // the next byte is taken as it is
		case '"':
			if !escaped {
				return s[1:i], s[i+1:], nil
			}
			return unescape(s[1:i]), s[i+1:], nil
		}
	}
	return "", "", errors.New("quoted string not closed")
}

func unescape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' }

func skipSpace(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

// tokenLen is the length of the token (RFC 3261 §25.1) at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-.!%*_+`'~", b) >= 0) {
			return i
		}
	}
	return len(s)
}

// clip shortens what goes into an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
