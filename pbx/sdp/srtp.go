package sdp

import (
	"errors"
	"strings"
)

// ErrProfileMismatch: one side of a call uses SRTP (RTP/SAVP, RTP/SAVPF)
// and the other plain RTP. The relay forwards packets untouched, so it
// cannot translate: such a call is refused (488).
var ErrProfileMismatch = errors.New("sdp: one side offers SRTP, the other plain RTP")

// SRTP reports whether the stream's transport is a secure RTP profile
// (RFC 3711: RTP/SAVP, RTP/SAVPF; also DTLS-SRTP's UDP/TLS/RTP/SAVP).
// Best-effort SRTP (RTP/AVP with a=crypto) counts as plain RTP.
func (s Stream) SRTP() bool {
	return strings.Contains(strings.ToUpper(s.Proto), "SAVP")
}

// HasSRTP reports whether body's first active audio stream uses a
// secure RTP profile. A body that does not parse has none.
func HasSRTP(body []byte) bool {
	st, err := Parse(body)
	if err != nil {
		return false
	}
	i := FirstAudio(st)
	return i >= 0 && st[i].SRTP()
}
