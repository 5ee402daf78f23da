package b2bua

// Leg names a side of the media relay: LegA faces the caller, LegB the
// callee. It stands in for media.Leg until package media exists; then this
// file becomes `type Leg = media.Leg` with LegA = media.A and LegB = media.B,
// and nothing else here changes.
type Leg int

// The two sides of a call's media session.
const (
	LegA Leg = iota
	LegB
)

func (l Leg) other() Leg { return 1 - l }
