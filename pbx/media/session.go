package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// packetBuffer is the largest datagram relayed; a longer one is dropped
// rather than forwarded cut short. RTP stays below the path MTU.
const packetBuffer = 4096

// Session relays the media of one call between leg A and leg B.
//
// Forwarding: a packet that arrives on the pair facing leg X goes out of
// the pair facing the other leg, RTP to RTP and RTCP to RTCP, to that
// leg's address, byte for byte.
//
// Latching: a leg's address is first what its SDP said. The first packet
// from the leg latches the RTP (or RTCP) address to the packet's real
// source, which is what a phone behind NAT needs. Once latched, a packet
// from another source is dropped, unless its SSRC differs from the
// latched stream's (a new stream, such as a phone that moved or a call
// transferred to another phone) or the latched source has been silent for
// Config.RelatchAfter; then the latch moves to the new source. A new SDP
// from the leg that names another address than before clears the latches.
// An SDP with connection address 0.0.0.0 (old-style hold) stops all
// sending to that leg until an SDP with a real address arrives.
//
// A Session is safe for concurrent use.
type Session struct {
	r     *Relay
	id    string
	socks [2]*pair // socks[X] faces leg X
	wg    sync.WaitGroup

	sdpMu   sync.Mutex    // serialises Rewrite
	origins [2]sdp.Origin // origins[X] is presented to leg X; under sdpMu and mu

	mu     sync.Mutex
	legs   [2]legState
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// legState is what the session knows about one leg.
type legState struct {
	// From the leg's SDP.
	known   bool           // an SDP has been seen
	sdpRTP  netip.AddrPort // where its SDP says it receives RTP
	sdpRTCP netip.AddrPort
	mux     bool // RTCP travels on the RTP port
	noMedia bool // c=0.0.0.0: send nothing to it
	// profile: 0 unknown, profileRTP, profileSRTP or profileDTLS, from its
	// last SDP.
	profile int8

	rtp, rtcp latch

	// Counters of packets received from this leg.
	packets, bytes, dropped uint64
	lastPacket              time.Time
}

type latch struct {
	addr    netip.AddrPort // zero: not latched
	ssrc    uint32
	hasSSRC bool
	last    time.Time // last packet from addr
}

func newSession(r *Relay, id string, socks [2]*pair) (*Session, error) {
	s := &Session{r: r, id: id, socks: socks}
	for l := range s.origins {
		o, err := sdp.NewOrigin("twinpbx")
		if err != nil {
			socks[A].close()
			socks[B].close()
			r.alloc.release(socks[A].port)
			r.alloc.release(socks[B].port)
			return nil, err
		}
		s.origins[l] = o
	}
	return s, nil
}

func (s *Session) start() {
	for l := range s.socks {
		for _, rtcp := range []bool{false, true} {
			s.wg.Add(1)
			go s.pump(Leg(l), rtcp)
		}
	}
}

// ID returns the call ID the session was opened with.
func (s *Session) ID() string { return s.id }

// Port returns the relay's RTP port facing leg l (RTCP is one above).
func (s *Session) Port(l Leg) int { return s.socks[l].port }

// Rewrite takes an SDP body that leg from sent and returns the body to
// send to the other leg: its first active audio stream points at the
// relay's pair facing that other leg, other streams are rejected, codecs
// outside Config.Filter are removed, and the o= line is the relay's for
// that leg. It learns from's media address from the original. Errors
// (from package sdp, such as sdp.ErrNoCommonCodec) leave the session as
// it was.
func (s *Session) Rewrite(from Leg, body []byte) ([]byte, error) {
	if !from.valid() {
		return nil, fmt.Errorf("media session %q: rewriting SDP: invalid leg %v", s.id, from)
	}
	to := from.other()
	streams, err := sdp.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("media session %q: reading the SDP of leg %v: %w", s.id, from, err)
	}
	idx := sdp.FirstAudio(streams)
	ports := make([]int, len(streams))
	if idx >= 0 {
		ports[idx] = s.socks[to].port
	}
	out, remote, err := sdp.Rewrite(body, s.r.cfg.Addr, ports, s.r.cfg.Filter)
	if err != nil {
		return nil, fmt.Errorf("media session %q: rewriting the SDP of leg %v: %w", s.id, from, err)
	}

	s.sdpMu.Lock()
	defer s.sdpMu.Unlock()
	s.mu.Lock()
	origin := s.origins[to]
	s.mu.Unlock()
	out, err = origin.Apply(out, s.r.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("media session %q: setting the origin for leg %v: %w", s.id, to, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if idx >= 0 {
		// The relay forwards SRTP untouched and cannot translate: both
		// legs must use the same kind of profile. Checked here, under
		// sdpMu, so that two legs' SDPs at once cannot both pass.
		if other := s.legs[to].profile; other != 0 && other != profileOf(remote[idx]) {
			return nil, fmt.Errorf("media session %q: the SDP of leg %v: %w", s.id, from, sdp.ErrProfileMismatch)
		}
		s.learn(from, remote[idx])
	}
	s.origins[to] = origin
	return out, nil
}

// LateOffer returns the offer to send to the other leg on behalf of leg
// from, whose INVITE carried no SDP: G.711 and RFC 4733 events at the
// relay (sdp.LateOffer). The relay then knows nothing of from's address
// and sends it nothing until its answer arrives (Rewrite with the SDP of
// its ACK) or its first packet is latched.
func (s *Session) LateOffer(from Leg) ([]byte, error) {
	out, err := s.Rewrite(from, sdp.LateOffer(s.r.cfg.Addr))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := &s.legs[from]
	ls.known, ls.noMedia, ls.mux = false, false, false
	ls.sdpRTP, ls.sdpRTCP = netip.AddrPort{}, netip.AddrPort{}
	return out, nil
}

// learn records what leg l's SDP says about its audio stream.
func (s *Session) learn(l Leg, st sdp.Stream) {
	ls := &s.legs[l]
	ls.profile = profileOf(st)
	if st.Addr.IsValid() && st.Addr.IsUnspecified() {
		ls.noMedia = true
		ls.known = true
		s.r.log.Info("media leg on hold (c=0.0.0.0)", "id", s.id, "leg", l)
		return
	}
	rtp, rtcp := st.RTP(), st.RTCP()
	if ls.known && rtp != ls.sdpRTP {
		ls.rtp, ls.rtcp = latch{}, latch{}
	}
	ls.known, ls.noMedia = true, false
	ls.sdpRTP, ls.sdpRTCP, ls.mux = rtp, rtcp, st.RTCPMux
	s.r.log.Debug("media leg address from SDP", "id", s.id, "leg", l, "rtp", rtp, "rtcp", rtcp, "hold", st.Hold)
}

// pump forwards what arrives on the pair facing leg from, RTP or RTCP.
// It allocates nothing per packet.
func (s *Session) pump(from Leg, rtcp bool) {
	defer s.wg.Done()
	in := s.socks[from].conn(rtcp)
	out := s.socks[from.other()].conn(rtcp)
	buf := make([]byte, packetBuffer)
	for {
		n, src, truncated, err := in.ReadFromAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.mu.Lock()
			closed := s.closed
			s.legs[from].dropped++
			s.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		if truncated {
			s.drop(from)
			continue
		}
		dst, ok := s.route(from, rtcp, src, buf[:n])
		if !ok {
			continue
		}
		if _, err := out.WriteToAddrPort(buf[:n], dst); err != nil {
			s.drop(from)
		}
	}
}

func (s *Session) drop(from Leg) {
	s.mu.Lock()
	s.legs[from].dropped++
	s.mu.Unlock()
}

// route applies the latching rules to a packet from leg from and returns
// where to send it, if anywhere.
func (s *Session) route(from Leg, rtcp bool, src netip.AddrPort, pkt []byte) (netip.AddrPort, bool) {
	now := s.r.now()
	ssrc, hasSSRC := packetSSRC(pkt, rtcp)

	s.mu.Lock()
	defer s.mu.Unlock()
	ls := &s.legs[from]
	lt := &ls.rtp
	if rtcp {
		lt = &ls.rtcp
	}
	switch {
	case lt.addr == src:
	case !lt.addr.IsValid(),
		hasSSRC && lt.hasSSRC && ssrc != lt.ssrc,
		now.Sub(lt.last) >= s.r.cfg.RelatchAfter:
		if lt.addr.IsValid() {
			s.r.log.Info("media source moved", "id", s.id, "leg", from, "rtcp", rtcp, "from", lt.addr, "to", src)
		}
		lt.addr = src
	default:
		ls.dropped++ // a stray or spoofed source while the latched one talks
		return netip.AddrPort{}, false
	}
	lt.last = now
	if hasSSRC {
		lt.ssrc, lt.hasSSRC = ssrc, true
	}
	ls.lastPacket = now

	dst := s.legs[from.other()].dest(rtcp)
	if !dst.IsValid() || dst.Addr().IsUnspecified() || dst.Port() == 0 {
		ls.dropped++
		return netip.AddrPort{}, false
	}
	ls.packets++
	ls.bytes += uint64(len(pkt))
	return dst, true
}

// dest is where this leg receives RTP (or RTCP): the latched source when
// there is one, else what its SDP said; nothing while it holds with
// c=0.0.0.0.
func (ls *legState) dest(rtcp bool) netip.AddrPort {
	if ls.noMedia {
		return netip.AddrPort{}
	}
	if rtcp && !ls.mux {
		if ls.rtcp.addr.IsValid() {
			return ls.rtcp.addr
		}
		return ls.sdpRTCP
	}
	if ls.rtp.addr.IsValid() {
		return ls.rtp.addr
	}
	return ls.sdpRTP
}

// packetSSRC reads the sender SSRC of an RTP or RTCP packet. On the RTP
// port, RTCP can arrive multiplexed (RFC 5761); it is told apart by its
// packet type (192-223).
func packetSSRC(pkt []byte, rtcp bool) (uint32, bool) {
	if len(pkt) < 8 || pkt[0]>>6 != 2 {
		return 0, false
	}
	if rtcp || (pkt[1] >= 192 && pkt[1] <= 223) {
		return binary.BigEndian.Uint32(pkt[4:8]), true
	}
	if len(pkt) < 12 {
		return 0, false
	}
	return binary.BigEndian.Uint32(pkt[8:12]), true
}

// LegStats counts the packets received from one leg.
type LegStats struct {
	// Packets and Bytes were received from the leg and forwarded to the
	// other.
	Packets, Bytes uint64
	// Dropped were received from the leg and not forwarded: no address
	// for the other leg yet, the other leg on hold (c=0.0.0.0), a
	// source other than the latched one, too long, or a send error.
	Dropped uint64
	// LastPacket is when the last packet from the leg arrived from an
	// accepted source; zero if none has.
	LastPacket time.Time
}

// Stats are a session's counters, indexed by the leg the packets came
// from: Legs[A] counts the direction A to B.
type Stats struct {
	Legs [2]LegStats
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for l, ls := range s.legs {
		st.Legs[l] = LegStats{Packets: ls.packets, Bytes: ls.bytes, Dropped: ls.dropped, LastPacket: ls.lastPacket}
	}
	return st
}

// LegState is the exportable state of one leg.
type LegState struct {
	// Port is the relay's RTP port facing the leg; RTCP is Port+1.
	Port int `json:"port"`
	// KnownSDP is set once an SDP from the leg has been seen; SDPRTP,
	// SDPRTCP, RTCPMux and Hold come from it.
	KnownSDP bool           `json:"known_sdp,omitempty"`
	SDPRTP   netip.AddrPort `json:"sdp_rtp,omitzero"`
	SDPRTCP  netip.AddrPort `json:"sdp_rtcp,omitzero"`
	RTCPMux  bool           `json:"rtcp_mux,omitempty"`
	// Hold is an old-style hold (c=0.0.0.0): nothing is sent to the leg.
	Hold bool `json:"hold,omitempty"`
	// LatchedRTP and LatchedRTCP are the sources the leg's packets came
	// from; zero when not latched.
	LatchedRTP  netip.AddrPort `json:"latched_rtp,omitzero"`
	LatchedRTCP netip.AddrPort `json:"latched_rtcp,omitzero"`
	// SSRC of the latched RTP stream, when known.
	SSRC    uint32 `json:"ssrc,omitempty"`
	HasSSRC bool   `json:"has_ssrc,omitempty"`
	// Origin is the o= line the relay presents to the leg.
	Origin sdp.Origin `json:"origin"`
	// Profile is the kind of profile of the leg's last SDP, "rtp", "srtp"
	// (SDES) or "dtls-srtp", so that the twin too refuses a switch between
	// them; empty before any SDP.
	Profile string `json:"profile,omitempty"`
}

// SessionState is the exportable state of a session: what the twin needs
// to carry the call's media on after a failover. It encodes as JSON.
type SessionState struct {
	ID   string      `json:"id"`
	Legs [2]LegState `json:"legs"` // indexed by Leg
}

// State exports the session's state.
func (s *Session) State() SessionState {
	s.sdpMu.Lock()
	defer s.sdpMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SessionState{ID: s.id}
	for l, ls := range s.legs {
		st.Legs[l] = LegState{
			Port:     s.socks[l].port,
			KnownSDP: ls.known, SDPRTP: ls.sdpRTP, SDPRTCP: ls.sdpRTCP, RTCPMux: ls.mux, Hold: ls.noMedia,
			LatchedRTP: ls.rtp.addr, LatchedRTCP: ls.rtcp.addr,
			SSRC: ls.rtp.ssrc, HasSSRC: ls.rtp.hasSSRC,
			Origin: s.origins[l], Profile: profileNames[ls.profile],
		}
	}
	return st
}

// restore loads exported state into a session not yet started. The
// latches carry no time: the first packet after a takeover may move them,
// since the old box's clock says nothing about this one's.
func (s *Session) restore(st SessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l, ls := range st.Legs {
		s.legs[l] = legState{
			known: ls.KnownSDP, sdpRTP: ls.SDPRTP, sdpRTCP: ls.SDPRTCP, mux: ls.RTCPMux, noMedia: ls.Hold,
			rtp:     latch{addr: ls.LatchedRTP, ssrc: ls.SSRC, hasSSRC: ls.HasSSRC},
			rtcp:    latch{addr: ls.LatchedRTCP},
			profile: profileByName(ls.Profile),
		}
		if ls.Origin.SessionID != 0 {
			s.origins[l] = ls.Origin
		}
	}
}

// Close stops forwarding, waits for the session's goroutines to end and
// returns its ports to the relay. Closing twice is harmless.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closeErr = errors.Join(s.socks[A].close(), s.socks[B].close())
		s.wg.Wait()
		s.r.alloc.release(s.socks[A].port)
		s.r.alloc.release(s.socks[B].port)
		s.r.forget(s)
		st := s.Stats()
		s.r.log.Info("media session closed", "id", s.id,
			"packets_a_to_b", st.Legs[A].Packets, "packets_b_to_a", st.Legs[B].Packets,
			"dropped", st.Legs[A].Dropped+st.Legs[B].Dropped)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("closing media session %q: %w", s.id, s.closeErr)
		}
	})
	return s.closeErr
}

// Profiles of legState.profile: plain RTP, SDES-SRTP and DTLS-SRTP. The
// relay cannot translate between any two of them (SDES keys and a DTLS
// handshake do not meet).
const (
	profileRTP  int8 = 1
	profileSRTP int8 = 2 // SDES
	profileDTLS int8 = 3
)

// profileNames are the profiles' names in LegState ("srtp" is SDES, as
// it was named before DTLS-SRTP was told apart).
var profileNames = [...]string{profileRTP: "rtp", profileSRTP: "srtp", profileDTLS: "dtls-srtp"}

// profileByName is the profile called name in LegState; 0 (unknown, no
// check) for an empty or unknown name.
func profileByName(name string) int8 {
	if i := slices.Index(profileNames[:], name); i > 0 {
		return int8(i)
	}
	return 0
}

func profileOf(st sdp.Stream) int8 {
	switch st.Security() {
	case sdp.SDES:
		return profileSRTP
	case sdp.DTLS:
		return profileDTLS
	}
	return profileRTP
}
