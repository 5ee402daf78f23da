package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// digestInput is what goes into the response a phone must send.
type digestInput struct {
	sha256 bool   // SHA-256 (RFC 8760), else MD5
	user   string // as sent (no userhash)
	realm  string
	secret string
	method string
	uri    string
	nonce  string
	qop    bool // qop=auth with nc and cnonce (RFC 7616), else RFC 2069 style
	nc     uint32
	cnonce string
}

// expected computes the request-digest (RFC 7616 §3.4.1, RFC 3261 §22.4)
// as lower-case hex into out and returns its length. It is computed here
// rather than through the digest library, which builds a dozen strings per
// digestInput, because every REGISTER and INVITE pays for it.
func (a digestInput) expected(out *[2 * sha256.Size]byte) int {
	var buf [512]byte
	var ha1, ha2 [2 * sha256.Size]byte
	b := append(buf[:0], a.user...)
	b = append(b, ':')
	b = append(b, a.realm...)
	b = append(b, ':')
	b = append(b, a.secret...)
	n := a.sum(b, &ha1)
	b = append(buf[:0], a.method...)
	b = append(b, ':')
	b = append(b, a.uri...)
	a.sum(b, &ha2)
	b = append(buf[:0], ha1[:n]...)
	b = append(b, ':')
	b = append(b, a.nonce...)
	b = append(b, ':')
	if a.qop {
		var nc [8]byte
		hexNC := strconv.AppendUint(nc[:0], uint64(a.nc), 16)
		for range 8 - len(hexNC) {
			b = append(b, '0')
		}
		b = append(b, hexNC...)
		b = append(b, ':')
		b = append(b, a.cnonce...)
		b = append(b, ":auth:"...)
	}
	b = append(b, ha2[:n]...)
	return a.sum(b, out)
}

// sum hashes b into out as lower-case hex and returns the hex length.
func (a digestInput) sum(b []byte, out *[2 * sha256.Size]byte) int {
	if a.sha256 {
		s := sha256.Sum256(b)
		return hex.Encode(out[:], s[:])
	}
	s := md5.Sum(b)
	return hex.Encode(out[:], s[:])
}
