package sdp

import (
	"errors"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// ErrProfileMismatch: one side of a call uses SRTP (RTP/SAVP, RTP/SAVPF)
// and the other plain RTP. The relay forwards packets untouched, so it
// cannot translate: such a call is refused (488).
var ErrProfileMismatch = errors.New("sdp: one side offers SRTP, the other plain RTP")

// Security is how a stream's media is protected, as its transport says.
type Security int

// The kinds of media protection the relay passes through. Two parties
// can only be joined when they use the same kind.
const (
	// Plain is RTP/AVP or RTP/AVPF, best-effort a=crypto included.
	Plain Security = iota
	// SDES is SRTP keyed in the SDP itself (RTP/SAVP, RTP/SAVPF with
	// a=crypto, RFC 4568).
	SDES
	// DTLS is SRTP keyed by a DTLS handshake between the parties
	// (UDP/TLS/RTP/SAVP(F), a=fingerprint and a=setup, RFC 5763/5764).
	DTLS
)

func (s Security) String() string {
	switch s {
	case SDES:
		return "SDES-SRTP"
	case DTLS:
		return "DTLS-SRTP"
	}
	return "plain RTP"
}

// SRTP reports whether the stream's transport is a secure RTP profile
// (RFC 3711: RTP/SAVP, RTP/SAVPF; also DTLS-SRTP's UDP/TLS/RTP/SAVP).
// Best-effort SRTP (RTP/AVP with a=crypto) counts as plain RTP.
func (s Stream) SRTP() bool { return s.Security() != Plain }

// Security tells plain RTP, SDES-SRTP and DTLS-SRTP apart by the
// stream's transport.
func (s Stream) Security() Security {
	switch p := strings.ToUpper(s.Proto); {
	case !strings.Contains(p, "SAVP"):
		return Plain
	case strings.Contains(p, "TLS"):
		return DTLS
	}
	return SDES
}

// SecurityOf returns the protection of body's first active audio stream;
// a body that does not parse, or has no such stream, is Plain.
func SecurityOf(body []byte) Security {
	st, err := Parse(body)
	if err != nil {
		return Plain
	}
	i := FirstAudio(st)
	if i < 0 {
		return Plain
	}
	return st[i].Security()
}

// Keys returns what a party needs to decrypt the media body describes:
// the a=crypto values of its first active audio stream (SDES), or for
// DTLS-SRTP the certificate fingerprints (a=fingerprint, media level,
// else session level), which the keys of the handshake depend on. The
// a=setup role is left out: it follows from each offer and answer
// (RFC 4145), so a party that only switched roles keeps its keys. Plain
// RTP, a body that does not parse and a stream without keys give nil.
// Two descriptions with equal Keys are keyed the same way: a party that
// was given one need not be given the other.
func Keys(body []byte) []string {
	sd, err := unmarshal(body)
	if err != nil {
		return nil
	}
	streams, err := describe(sd)
	if err != nil {
		return nil
	}
	i := FirstAudio(streams)
	if i < 0 {
		return nil
	}
	md := sd.MediaDescriptions[i]
	switch streams[i].Security() {
	case SDES:
		return values(md.Attributes, "crypto")
	case DTLS:
		if fp := values(md.Attributes, "fingerprint"); len(fp) > 0 {
			return fp
		}
		return values(sd.Attributes, "fingerprint")
	}
	return nil
}

func values(attrs []psdp.Attribute, key string) []string {
	var out []string
	for _, a := range attrs {
		if a.Key == key {
			out = append(out, strings.TrimSpace(a.Value))
		}
	}
	return out
}
