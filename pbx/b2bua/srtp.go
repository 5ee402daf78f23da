package b2bua

import "github.com/twinpbx/twinpbx/pbx/sdp"

// srtpLocked reports whether either leg of the call negotiated SRTP
// (RTP/SAVP with SDES keys, passed end to end). The caller holds c.mu.
//
// Transfers of such calls are refused: the parties' keys were exchanged
// with the transferor, and joining them to a third party would need a new
// offer and answer on both sides, which the transfers do not make.
func (c *call) srtpLocked() bool {
	for _, l := range c.legs {
		if l != nil && sdp.HasSRTP(l.SDP) {
			return true
		}
	}
	return false
}
