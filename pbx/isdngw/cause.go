package isdngw

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/sipreason"
)

// Cause mapping between Q.850 (ISDN) and SIP responses, after RFC 3398
// sections 7.2.4.1 (SIP → ISDN) and 8.2.6.1 (ISDN → SIP).

var q850ToSIP = map[uint8]int{
	1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403,
	22: 410, 23: 410, 26: 404, 27: 502, 28: 484, 29: 501, 31: 480, 34: 503,
	38: 503, 41: 503, 42: 503, 47: 503, 55: 403, 57: 403, 58: 503, 65: 488,
	69: 501, 70: 488, 79: 501, 87: 403, 88: 503, 102: 504, 111: 500, 127: 500,
}

// SIPStatus is the SIP response for a call the ISDN side cleared with a
// Q.850 cause before it was answered. Causes RFC 3398 does not list take
// the default of their class: 480 for normal events (including 16, normal
// clearing, which has no failure response of its own), 503 for resource
// unavailable, 500 for the rest.
func SIPStatus(cause uint8) int {
	if s, ok := q850ToSIP[cause]; ok {
		return s
	}
	switch {
	case cause < 32:
		return 480
	case cause < 48:
		return 503
	}
	return 500
}

var sipToQ850 = map[int]uint8{
	400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21,
	408: 102, 410: 22, 413: 127, 414: 28, 415: 79, 416: 127, 420: 127,
	421: 127, 423: 127, 480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1,
	486: 17, 487: 127, 488: 127, 500: 41, 501: 79, 502: 38, 503: 41,
	504: 102, 505: 127, 513: 127, 600: 17, 603: 21, 604: 1, 606: 58,
}

// Q850Cause is the Q.850 cause for a SIP failure response. A status RFC
// 3398 does not list is treated as the x00 of its class (RFC 3261 section
// 8.1.3.2): 4xx as 400, 5xx as 500, 6xx as 600.
func Q850Cause(status int) uint8 {
	if c, ok := sipToQ850[status]; ok {
		return c
	}
	if c, ok := sipToQ850[status/100*100]; ok {
		return c
	}
	return 31 // normal, unspecified
}

// reasonCause reads the Q.850 cause of a message's Reason header, 0 when
// it has none.
func reasonCause(m sip.Message) uint8 { return uint8(sipreason.Q850(m)) }

// causePreemption is Q.850's cause 8, preemption: the PBX cleared the
// call to make room for an emergency call.
const causePreemption = 8

// failureCause is the Q.850 cause for the PBX's failure response to a
// call from the line: RFC 3398's for its status, but preemption when its
// Reason says so (a ringing call cleared for an emergency call).
func failureCause(res *sip.Response) uint8 {
	if reasonCause(res) == causePreemption {
		return causePreemption
	}
	return Q850Cause(res.StatusCode)
}

// isEmergency tells whether an INVITE is an emergency call (Priority:
// emergency, RFC 3261 §20.26).
func isEmergency(req *sip.Request) bool {
	h := req.GetHeader("Priority")
	return h != nil && strings.EqualFold(strings.TrimSpace(h.Value()), "emergency")
}
