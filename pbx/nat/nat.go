// Package nat holds what the PBX does for phones behind NAT on the SIP
// level: answers go back where the request really came from (RFC 3581).
package nat

import (
	"net"

	"github.com/emiago/sipgo/sip"
)

// Symmetric sends res back to the address and port req came from and
// records them in the top Via (received, rport), whether or not the phone
// asked for rport, as Kamailio's force_rport does: phones behind NAT whose
// Via names their private address still get the answer.
func Symmetric(req *sip.Request, res *sip.Response) {
	src := req.Source()
	host, port, err := net.SplitHostPort(src)
	if err != nil {
		return
	}
	if via := res.Via(); via != nil {
		if via.Params == nil {
			via.Params = sip.NewParams()
		}
		if via.Host != host {
			via.Params.Add("received", host)
		}
		via.Params.Add("rport", port)
	}
	res.SetDestination(src)
}
