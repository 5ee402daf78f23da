// Package sipreason names SIP status codes with the reason phrases of
// RFC 3261 §21 and its extensions, for answers the PBX makes up itself
// (sipgo has no such table), and reads the Q.850 cause a message's Reason
// header carries (RFC 3326).
package sipreason

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

var phrases = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
	200: "OK", 202: "Accepted",
	300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
	410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
	416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
	480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
	483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
	487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
	500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
	504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

// Phrase returns the reason phrase of code, or "" for a code it does not
// know.
func Phrase(code int) string { return phrases[code] }

// Q850 reads the Q.850 cause of m's Reason headers (RFC 3326), 0 when it
// has none or it is not a cause Q.850 defines (1 to 127).
func Q850(m sip.Message) int {
	for _, h := range m.GetHeaders("Reason") {
		proto, params, _ := strings.Cut(h.Value(), ";")
		if !strings.EqualFold(strings.TrimSpace(proto), "Q.850") {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(p, "=")
			if !strings.EqualFold(strings.TrimSpace(k), "cause") {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 && n < 128 {
				return n
			}
		}
	}
	return 0
}
