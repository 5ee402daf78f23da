package q931

import (
	"fmt"
	"strings"
)

// Information element identifiers (codeset 0).
const (
	IEBearerCapability  = 0x04
	IECause             = 0x08
	IECallState         = 0x14
	IEChannelID         = 0x18
	IEProgressIndicator = 0x1e
	IEDisplay           = 0x28
	IECallingNumber     = 0x6c
	IECalledNumber      = 0x70
	IERestartIndicator  = 0x79
	IESendingComplete   = 0xa1
)

// Information transfer capabilities of the bearer capability.
const (
	Speech          = 0x00
	UnrestrictedDig = 0x08
	Audio31kHz      = 0x10
)

// Layer 1 user information protocols of the bearer capability.
const (
	ULawG711 = 0x02
	ALawG711 = 0x03
)

// BearerCapability says what the call carries: 64 kbit/s circuit mode with
// a transfer capability and, for speech and audio, the G.711 law.
type BearerCapability struct {
	Capability uint8 // Speech, UnrestrictedDig, Audio31kHz
	Layer1     uint8 // ALawG711, ULawG711; 0 for none
}

// IE encodes b (circuit mode, 64 kbit/s, ITU-T coding).
func (b BearerCapability) IE() IE {
	d := []byte{0x80 | b.Capability&0x1f, 0x90}
	if b.Layer1 != 0 {
		d = append(d, 0xa0|b.Layer1&0x1f)
	}
	return IE{ID: IEBearerCapability, Data: d}
}

// ParseBearerCapability decodes the element's data.
func ParseBearerCapability(d []byte) (BearerCapability, error) {
	if len(d) < 2 {
		return BearerCapability{}, fmt.Errorf("%w: bearer capability of %d octets", ErrMalformed, len(d))
	}
	b := BearerCapability{Capability: d[0] & 0x1f}
	// Octet 4 may be followed by 4a/4b (extension bit clear) and the rate
	// multiplier 4.1 for multirate; skip to octet 5 (layer 1 identity 01).
	for _, o := range d[2:] {
		if o&0x60 == 0x20 {
			b.Layer1 = o & 0x1f
			break
		}
	}
	return b, nil
}

// Cause locations (Q.850).
const (
	LocUser            = 0
	LocPrivateLocal    = 1
	LocPublicLocal     = 2
	LocTransit         = 3
	LocPublicRemote    = 4
	LocPrivateRemote   = 5
	LocInternational   = 7
	LocBeyondInterwork = 10
)

// Common Q.850 cause values.
const (
	CauseUnallocatedNumber     = 1
	CauseNormalClearing        = 16
	CauseUserBusy              = 17
	CauseNoUserResponding      = 18
	CauseNoAnswer              = 19
	CauseCallRejected          = 21
	CauseNonSelectedUser       = 26
	CauseDestinationOutOfOrder = 27
	CauseInvalidNumberFormat   = 28
	CauseNormalUnspecified     = 31
	CauseNoChannel             = 34
	CauseTemporaryFailure      = 41
	CauseChannelUnavailable    = 44
	CauseInvalidCallRef        = 81
	CauseMandatoryIEMissing    = 96
	CauseMessageTypeNonExist   = 97
	CauseWrongMessage          = 98
	CauseInvalidIEContents     = 100
	CauseWrongState            = 101
	CauseRecoveryOnTimerExpiry = 102
	CauseResponseToStatusEnq   = 30
)

// Cause is the cause element: where the call was cleared and why.
type Cause struct {
	Location   uint8
	Value      uint8 // Q.850 cause value
	Diagnostic []byte
}

// IE encodes c with ITU-T coding.
func (c Cause) IE() IE {
	d := []byte{0x80 | c.Location&0x0f, 0x80 | c.Value&0x7f}
	return IE{ID: IECause, Data: append(d, c.Diagnostic...)}
}

// ParseCause decodes the element's data.
func ParseCause(d []byte) (Cause, error) {
	if len(d) < 2 {
		return Cause{}, fmt.Errorf("%w: cause of %d octets", ErrMalformed, len(d))
	}
	c := Cause{Location: d[0] & 0x0f}
	p := 1
	if d[0]&0x80 == 0 { // octet 3a: recommendation
		p++
	}
	if p >= len(d) {
		return Cause{}, fmt.Errorf("%w: cause without a value", ErrMalformed)
	}
	c.Value = d[p] & 0x7f
	if p+1 < len(d) {
		c.Diagnostic = d[p+1:]
	}
	return c, nil
}

// CallStateIE encodes a call state value (0–63) for STATUS.
func CallStateIE(state uint8) IE { return IE{ID: IECallState, Data: []byte{state & 0x3f}} }

// ChannelID is the channel identification element.
type ChannelID struct {
	// PRI selects the primary-rate form; otherwise the basic-rate form.
	PRI bool
	// Exclusive: only this channel is acceptable (otherwise preferred).
	Exclusive bool
	// Channel is the B channel: 1 or 2 on BRI, 1–31 on PRI. 0 means "any
	// channel" (AnyChannel) unless None is set.
	Channel uint8
	// None asks for no channel (BRI only).
	None bool
}

// IE encodes c.
func (c ChannelID) IE() IE {
	o := byte(0x80)
	if c.Exclusive {
		o |= 0x08
	}
	if !c.PRI {
		switch {
		case c.None:
		case c.Channel == 0:
			o |= 0x03
		default:
			o |= c.Channel & 0x03
		}
		return IE{ID: IEChannelID, Data: []byte{o}}
	}
	o |= 0x20
	if c.Channel == 0 {
		return IE{ID: IEChannelID, Data: []byte{o | 0x03}}
	}
	// As indicated in the following octets: ITU-T coding, channel number,
	// B-channel units.
	return IE{ID: IEChannelID, Data: []byte{o | 0x01, 0x83, 0x80 | c.Channel&0x7f}}
}

// ParseChannelID decodes the element's data.
func ParseChannelID(d []byte) (ChannelID, error) {
	if len(d) < 1 {
		return ChannelID{}, fmt.Errorf("%w: empty channel identification", ErrMalformed)
	}
	o := d[0]
	if o&0x40 != 0 {
		return ChannelID{}, fmt.Errorf("%w: channel identification with an explicit interface identifier", ErrMalformed)
	}
	c := ChannelID{PRI: o&0x20 != 0, Exclusive: o&0x08 != 0}
	sel := o & 0x03
	if !c.PRI {
		switch sel {
		case 0:
			c.None = true
		case 3:
		default:
			c.Channel = sel
		}
		return c, nil
	}
	switch sel {
	case 0:
		c.None = true
		return c, nil
	case 3:
		return c, nil
	case 1:
		if len(d) < 3 || d[1]&0x10 != 0 || d[1]&0x0f != 3 {
			return ChannelID{}, fmt.Errorf("%w: PRI channel identification without a B-channel number", ErrMalformed)
		}
		c.Channel = d[2] & 0x7f
		if c.Channel == 0 || c.Channel > 31 {
			return ChannelID{}, fmt.Errorf("%w: PRI channel %d", ErrMalformed, c.Channel)
		}
		return c, nil
	}
	return ChannelID{}, fmt.Errorf("%w: reserved channel selection on PRI", ErrMalformed)
}

// Progress descriptions.
const (
	ProgressNotEndToEnd    = 1
	ProgressDestNonISDN    = 2
	ProgressOrigNonISDN    = 3
	ProgressReturnedToISDN = 4
	ProgressInbandInfo     = 8
)

// ProgressIndicator tells about interworking and in-band tones.
type ProgressIndicator struct {
	Location    uint8
	Description uint8
}

// IE encodes p.
func (p ProgressIndicator) IE() IE {
	return IE{ID: IEProgressIndicator, Data: []byte{0x80 | p.Location&0x0f, 0x80 | p.Description&0x7f}}
}

// ParseProgressIndicator decodes the element's data.
func ParseProgressIndicator(d []byte) (ProgressIndicator, error) {
	if len(d) != 2 {
		return ProgressIndicator{}, fmt.Errorf("%w: progress indicator of %d octets", ErrMalformed, len(d))
	}
	return ProgressIndicator{Location: d[0] & 0x0f, Description: d[1] & 0x7f}, nil
}

// DisplayIE encodes display text (IA5; other characters become '?').
func DisplayIE(s string) IE {
	return IE{ID: IEDisplay, Data: []byte(ia5(s, 82))}
}

func ia5(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Number types and numbering plans.
const (
	TypeUnknown       = 0
	TypeInternational = 1
	TypeNational      = 2
	TypeSubscriber    = 4
	PlanUnknown       = 0
	PlanISDN          = 1
)

// Presentation and screening of the calling party number.
const (
	PresentationAllowed    = 0
	PresentationRestricted = 1
	UserNotScreened        = 0
	UserVerifiedPassed     = 1
	NetworkProvided        = 3
)

// PartyNumber is a calling or called party number.
type PartyNumber struct {
	Type, Plan uint8
	// Presentation and Screening are used for the calling party only.
	Presentation, Screening uint8
	Digits                  string
}

// CallingIE encodes n as the calling party number (with octet 3a).
func (n PartyNumber) CallingIE() IE {
	d := []byte{n.Type&7<<4 | n.Plan&0x0f, 0x80 | n.Presentation&3<<5 | n.Screening&3}
	return IE{ID: IECallingNumber, Data: append(d, digits(n.Digits)...)}
}

// CalledIE encodes n as the called party number.
func (n PartyNumber) CalledIE() IE {
	d := []byte{0x80 | n.Type&7<<4 | n.Plan&0x0f}
	return IE{ID: IECalledNumber, Data: append(d, digits(n.Digits)...)}
}

// digits keeps the characters a party number may carry (IA5 0–9 * #).
func digits(s string) []byte {
	var b []byte
	for _, c := range []byte(s) {
		if c >= '0' && c <= '9' || c == '*' || c == '#' {
			b = append(b, c)
		}
	}
	return b
}

// ParsePartyNumber decodes a calling or called party number's data.
func ParsePartyNumber(d []byte) (PartyNumber, error) {
	if len(d) < 1 {
		return PartyNumber{}, fmt.Errorf("%w: empty party number", ErrMalformed)
	}
	n := PartyNumber{Type: d[0] >> 4 & 7, Plan: d[0] & 0x0f}
	p := 1
	if d[0]&0x80 == 0 {
		if len(d) < 2 {
			return PartyNumber{}, fmt.Errorf("%w: party number without octet 3a", ErrMalformed)
		}
		n.Presentation, n.Screening = d[1]>>5&3, d[1]&3
		p = 2
	}
	for _, c := range d[p:] {
		if !(c >= '0' && c <= '9' || c == '*' || c == '#' || c >= 'a' && c <= 'e') {
			return PartyNumber{}, fmt.Errorf("%w: digit %#02x in party number", ErrMalformed, c)
		}
	}
	n.Digits = string(d[p:])
	return n, nil
}

// SendingCompleteIE is the single-octet sending complete element.
func SendingCompleteIE() IE { return IE{ID: IESendingComplete} }

// Restart classes of the restart indicator.
const (
	RestartChannels      = 0
	RestartInterface     = 6
	RestartAllInterfaces = 7
)

// RestartIndicatorIE encodes a restart class.
func RestartIndicatorIE(class uint8) IE {
	return IE{ID: IERestartIndicator, Data: []byte{0x80 | class&7}}
}
