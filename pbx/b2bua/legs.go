package b2bua

import "github.com/twinpbx/twinpbx/pbx/media"

// Leg names a side of a call's media session: LegA faces the caller, LegB
// the callee. After a transfer the new party takes the side of the one it
// replaced.
type Leg = media.Leg

// The two sides of a call.
const (
	LegA = media.A
	LegB = media.B
)

// other is the opposite side.
func other(l Leg) Leg { return 1 - l }
