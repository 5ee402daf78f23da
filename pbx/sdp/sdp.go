// Package sdp rewrites the session descriptions of a call so that its media
// is anchored in the PBX: every audio stream is pointed at a port of the
// media relay, codecs the box does not allow are removed, and what the
// phone originally said (address, ports, payload types, direction, hold) is
// reported so the relay knows where to send. It also keeps the stable o=
// line a relayed session must present to each leg (RFC 3264 section 8).
//
// Parsing and marshalling is done by github.com/pion/sdp/v3; this package
// only edits the parsed description. Media types and transports pion does
// not know (for example m=image for T.38) are rejected by its parser and
// come back as an error.
package sdp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// Errors returned by Parse and Rewrite. Parse failures are wrapped with
// what was wrong; test them with errors.Is.
var (
	// ErrNoMedia: the description has no m= line at all.
	ErrNoMedia = errors.New("sdp: no m= line")
	// ErrNoCommonCodec: every audio stream lost all its codecs to the
	// filter (telephone-event alone does not carry a call).
	ErrNoCommonCodec = errors.New("sdp: no allowed codec left")
	// ErrBadSDP: the body is not a session description we can work with.
	ErrBadSDP = errors.New("sdp: malformed session description")
)

// Direction is a stream's direction attribute (RFC 3264 section 5.1).
type Direction string

// The four directions; a stream without an attribute is SendRecv.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// TelephoneEvent is the encoding name of RFC 4733 events (DTMF). The
// codec filter never removes it.
const TelephoneEvent = "telephone-event"

// Stream is what one m= line of the original description said.
type Stream struct {
	// Index is the m= line's position, counting from 0.
	Index int
	// Media is the media type: "audio", "video", ...
	Media string
	// Proto is the transport, such as "RTP/AVP".
	Proto string
	// Addr is the connection address that applies to the stream (media
	// level, else session level). It is the zero Addr when there is none
	// or it is a host name; 0.0.0.0 means old-style hold.
	Addr netip.Addr
	// Port is the RTP port; 0 means the stream is rejected or disabled.
	Port int
	// RTCPPort is where the phone wants RTCP: a=rtcp if given, else
	// Port+1, or Port itself when RTCPMux is set. 0 when Port is 0.
	RTCPPort int
	// RTCPMux is set when the stream offers or accepts a=rtcp-mux.
	RTCPMux bool
	// PayloadTypes are the formats of the m= line, as offered. Empty
	// for non-RTP transports.
	PayloadTypes []uint8
	// Direction is the stream's (or else the session's) direction.
	Direction Direction
	// Hold is set when the phone puts the stream on hold: sendonly,
	// inactive, or an unspecified connection address (c=0.0.0.0).
	Hold bool
}

// RTP returns the address the phone said it receives RTP on; it is
// not valid when the address is unknown or the port is 0.
func (s Stream) RTP() netip.AddrPort {
	if !s.Addr.IsValid() || s.Port == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(s.Addr, uint16(s.Port))
}

// RTCP returns the address the phone said it receives RTCP on.
func (s Stream) RTCP() netip.AddrPort {
	if !s.Addr.IsValid() || s.RTCPPort == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(s.Addr, uint16(s.RTCPPort))
}

// FirstAudio returns the index of the first active (non-zero port) audio
// stream, the one a relay carries, or -1.
func FirstAudio(streams []Stream) int {
	return slices.IndexFunc(streams, func(st Stream) bool { return st.Media == "audio" && st.Port != 0 })
}

// Parse reads body and reports its streams without changing anything.
func Parse(body []byte) ([]Stream, error) {
	sd, err := unmarshal(body)
	if err != nil {
		return nil, err
	}
	return describe(sd)
}

func unmarshal(body []byte) (*psdp.SessionDescription, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrBadSDP)
	}
	var sd psdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, ErrNoMedia
	}
	return &sd, nil
}

// describe builds the Stream list and checks what Rewrite relies on.
func describe(sd *psdp.SessionDescription) ([]Stream, error) {
	var sessAddr netip.Addr
	if sd.ConnectionInformation != nil {
		sessAddr = connAddr(sd.ConnectionInformation)
	}
	sessDir := direction(sd.Attributes, SendRecv)

	streams := make([]Stream, 0, len(sd.MediaDescriptions))
	for i, md := range sd.MediaDescriptions {
		st := Stream{
			Index:     i,
			Media:     md.MediaName.Media,
			Proto:     strings.Join(md.MediaName.Protos, "/"),
			Addr:      sessAddr,
			Port:      md.MediaName.Port.Value,
			Direction: direction(md.Attributes, sessDir),
		}
		if md.ConnectionInformation != nil {
			st.Addr = connAddr(md.ConnectionInformation)
		}
		if isRTP(md) {
			st.PayloadTypes = make([]uint8, 0, len(md.MediaName.Formats))
			for _, f := range md.MediaName.Formats {
				pt, err := payloadType(f)
				if err != nil {
					return nil, fmt.Errorf("%w: m= line %d: %w", ErrBadSDP, i, err)
				}
				st.PayloadTypes = append(st.PayloadTypes, pt)
			}
		}
		if st.Port != 0 {
			_, st.RTCPMux = md.Attribute("rtcp-mux")
			st.RTCPPort = st.Port + 1
			if st.RTCPMux {
				st.RTCPPort = st.Port
			}
			if v, ok := md.Attribute("rtcp"); ok {
				p, err := rtcpPort(v)
				if err != nil {
					return nil, fmt.Errorf("%w: m= line %d: %w", ErrBadSDP, i, err)
				}
				st.RTCPPort = p
			}
			if st.RTCPPort > 65535 {
				return nil, fmt.Errorf("%w: m= line %d: RTCP port %d out of range", ErrBadSDP, i, st.RTCPPort)
			}
		}
		st.Hold = st.Direction == SendOnly || st.Direction == Inactive ||
			(st.Addr.IsValid() && st.Addr.IsUnspecified())
		streams = append(streams, st)
	}
	return streams, nil
}

func connAddr(c *psdp.ConnectionInformation) netip.Addr {
	if c.Address == nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(c.Address.Address)
	if err != nil {
		return netip.Addr{} // a host name: legal, but not ours to resolve
	}
	return a.Unmap()
}

func direction(attrs []psdp.Attribute, def Direction) Direction {
	for _, a := range attrs {
		switch Direction(a.Key) {
		case SendRecv, SendOnly, RecvOnly, Inactive:
			return Direction(a.Key)
		}
	}
	return def
}

func isRTP(md *psdp.MediaDescription) bool {
	for _, p := range md.MediaName.Protos {
		if p == "RTP" {
			return true
		}
	}
	return false
}

func payloadType(f string) (uint8, error) {
	n, err := strconv.Atoi(f)
	if err != nil || n < 0 || n > 127 {
		return 0, fmt.Errorf("payload type %q is not a number 0-127", f)
	}
	return uint8(n), nil
}

// rtcpPort reads the port of "a=rtcp:<port> [IN IP4 addr]" (RFC 3605).
func rtcpPort(v string) (int, error) {
	f, _, _ := strings.Cut(v, " ")
	n, err := strconv.Atoi(f)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("a=rtcp:%s: port out of range", v)
	}
	return n, nil
}

// staticNames are the encoding names of the static payload types of
// RFC 3551 tables 4 and 5, for m= lines that carry no a=rtpmap for them.
var staticNames = map[uint8]string{
	0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC",
	8: "PCMA", 9: "G722", 10: "L16", 11: "L16", 12: "QCELP", 13: "CN",
	14: "MPA", 15: "G728", 16: "DVI4", 17: "DVI4", 18: "G729",
	25: "CelB", 26: "JPEG", 28: "nv", 31: "H261", 32: "MPV", 33: "MP2T", 34: "H263",
}

// encodingNames maps the payload types of md to their encoding names.
// Written here because pion's codec helpers (GetCodecMap) merge the codecs
// of all m= lines into one map and know no static payload type without an
// a=rtpmap, while the filter must judge each m= line on its own.
func encodingNames(md *psdp.MediaDescription) map[string]string {
	names := make(map[string]string, len(md.MediaName.Formats))
	for _, f := range md.MediaName.Formats {
		if pt, err := payloadType(f); err == nil {
			names[f] = staticNames[pt]
		}
	}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, rest, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(rest), "/")
		names[pt] = name
	}
	return names
}

// iceAttributes are dropped everywhere: the relay is not an ICE agent, and
// candidates would lead the far end around it.
var iceAttributes = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

func dropICE(attrs []psdp.Attribute) []psdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !iceAttributes[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

// setConn points c at addr unless it says 0.0.0.0 (old-style hold), which
// must reach the other side unchanged.
func setConn(c *psdp.ConnectionInformation, addr netip.Addr) {
	if a := connAddr(c); a.IsValid() && a.IsUnspecified() {
		return
	}
	c.NetworkType = "IN"
	c.AddressType = addrType(addr)
	c.Address = &psdp.Address{Address: addr.String()}
}

func addrType(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IP4"
	}
	return "IP6"
}

// Rewrite points body's media at the relay. For each m= line i, an audio
// stream gets the connection address addr and RTP port ports[i] (RTCP on
// ports[i]+1); any other media, an audio line whose port is already 0, and
// an audio line without a port in ports (index out of range or 0) is
// rejected by setting its port to 0, keeping the line as RFC 3264 asks.
// Connection addresses at session and media level become addr, except an
// old-style hold (c=0.0.0.0), which is kept so the other side knows.
// ICE attributes are dropped, a=rtcp is fixed to the relay's RTCP port,
// direction attributes and the o= line are kept untouched.
//
// filter, when not nil, decides by encoding name (as written in a=rtpmap,
// or the RFC 3551 name of a static payload type) which codecs stay; a
// removed codec loses its payload type, a=rtpmap, a=fmtp and a=rtcp-fb.
// telephone-event always stays. An audio line left without any codec but
// telephone-event is rejected; if that leaves no audio stream, Rewrite
// returns ErrNoCommonCodec.
//
// remote describes the original streams, one per m= line.
func Rewrite(body []byte, addr netip.Addr, ports []int, filter func(encodingName string) bool) (out []byte, remote []Stream, err error) {
	if !addr.IsValid() || addr.IsUnspecified() {
		return nil, nil, fmt.Errorf("sdp: relay address %v cannot receive media", addr)
	}
	addr = addr.Unmap()
	for i, p := range ports {
		if p < 0 || p > 65534 {
			return nil, nil, fmt.Errorf("sdp: relay port %d for m= line %d out of range", p, i)
		}
	}
	sd, err := unmarshal(body)
	if err != nil {
		return nil, nil, err
	}
	remote, err = describe(sd)
	if err != nil {
		return nil, nil, err
	}

	if sd.ConnectionInformation != nil {
		setConn(sd.ConnectionInformation, addr)
	}
	sd.Attributes = dropICE(sd.Attributes)

	offeredAudio, keptAudio := 0, 0
	for i, md := range sd.MediaDescriptions {
		md.Attributes = dropICE(md.Attributes)
		if md.ConnectionInformation != nil {
			setConn(md.ConnectionInformation, addr)
		}
		port := 0
		if i < len(ports) {
			port = ports[i]
		}
		if md.MediaName.Media != "audio" || remote[i].Port == 0 || port == 0 {
			reject(md)
			continue
		}
		offeredAudio++
		if isRTP(md) && !filterCodecs(md, filter) {
			reject(md)
			continue
		}
		keptAudio++
		if sd.ConnectionInformation == nil && md.ConnectionInformation == nil {
			md.ConnectionInformation = &psdp.ConnectionInformation{}
			setConn(md.ConnectionInformation, addr)
		}
		md.MediaName.Port.Value = port
		md.MediaName.Port.Range = nil // the relay gives one port pair per stream
		for j, a := range md.Attributes {
			if a.Key == "rtcp" {
				rp := port + 1
				if remote[i].RTCPPort == remote[i].Port {
					rp = port // muxed: RTCP travels on the RTP port
				}
				md.Attributes[j] = psdp.NewAttribute("rtcp", strconv.Itoa(rp))
			}
		}
	}
	if offeredAudio > 0 && keptAudio == 0 {
		return nil, remote, ErrNoCommonCodec
	}
	out, err = sd.Marshal()
	if err != nil {
		return nil, remote, fmt.Errorf("sdp: marshalling the rewritten description: %w", err)
	}
	return out, remote, nil
}

// reject disables a stream: port 0, no RTCP port. Formats stay, since an
// m= line must list at least one.
func reject(md *psdp.MediaDescription) {
	md.MediaName.Port.Value = 0
	md.MediaName.Port.Range = nil
	out := md.Attributes[:0]
	for _, a := range md.Attributes {
		if a.Key != "rtcp" {
			out = append(out, a)
		}
	}
	md.Attributes = out
}

// filterCodecs removes the payload types filter refuses. It reports
// whether a codec other than telephone-event is left.
func filterCodecs(md *psdp.MediaDescription, filter func(string) bool) bool {
	names := encodingNames(md)
	dropped := map[string]bool{}
	kept := md.MediaName.Formats[:0:0]
	audio := false
	for _, f := range md.MediaName.Formats {
		name := names[f]
		switch {
		case strings.EqualFold(name, TelephoneEvent):
			kept = append(kept, f)
		case filter == nil || filter(name):
			kept = append(kept, f)
			audio = true
		default:
			dropped[f] = true
		}
	}
	if !audio {
		return false
	}
	md.MediaName.Formats = kept
	if len(dropped) == 0 {
		return true
	}
	attrs := md.Attributes[:0]
	for _, a := range md.Attributes {
		switch a.Key {
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, _, _ := strings.Cut(a.Value, " ")
			if dropped[pt] {
				continue
			}
		}
		attrs = append(attrs, a)
	}
	md.Attributes = attrs
	return true
}
