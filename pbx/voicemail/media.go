package voicemail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// offer is what the mailbox takes from a caller's SDP offer.
type offer struct {
	remote netip.AddrPort
	codec  Codec
	// eventPT is the payload type of telephone-event; -1 when not offered.
	eventPT int
}

// errNoCodec: the offer has no plain RTP audio stream with PCMU or PCMA.
var errNoCodec = errors.New("the offer has no RTP/AVP audio stream with PCMU or PCMA")

// parseOffer picks the first of PCMU and PCMA the caller offers in its
// first audio stream, and its telephone-event payload type.
func parseOffer(body []byte) (offer, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return offer{}, fmt.Errorf("reading the SDP offer: %w", err)
	}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		if strings.Join(m.MediaName.Protos, "/") != "RTP/AVP" {
			return offer{}, fmt.Errorf("%w (transport %s: the mailbox speaks plain RTP only)", errNoCodec, strings.Join(m.MediaName.Protos, "/"))
		}
		o := offer{eventPT: -1}
		c := sd.ConnectionInformation
		if m.ConnectionInformation != nil {
			c = m.ConnectionInformation
		}
		if c != nil && c.Address != nil {
			if a, err := netip.ParseAddr(c.Address.Address); err == nil {
				o.remote = netip.AddrPortFrom(a, uint16(m.MediaName.Port.Value))
			}
		}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.Atoi(f)
			if err != nil || pt < 0 || pt > 127 {
				continue
			}
			if c, ok := codecOf(uint8(pt)); ok && o.codec == "" {
				o.codec = c
			}
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, _ := strings.Cut(a.Value, " ")
			if strings.HasPrefix(strings.ToLower(enc), "telephone-event/") {
				if n, err := strconv.Atoi(pt); err == nil && n >= 96 && n <= 127 {
					o.eventPT = n
				}
			}
		}
		if o.codec == "" {
			return offer{}, errNoCodec
		}
		return o, nil
	}
	return offer{}, errNoCodec
}

// answerSDP is our answer: one audio stream at addr:port with the chosen
// codec and, when offered, telephone-event.
func answerSDP(addr netip.AddrPort, o offer, sessID uint64) []byte {
	ip := "IP4"
	if addr.Addr().Is6() {
		ip = "IP6"
	}
	pt := o.codec.PayloadType()
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=twinpbx %d 1 IN %s %s\r\ns=voicemail\r\nc=IN %s %s\r\nt=0 0\r\n", sessID, ip, addr.Addr(), ip, addr.Addr())
	if o.eventPT >= 0 {
		fmt.Fprintf(&b, "m=audio %d RTP/AVP %d %d\r\na=rtpmap:%d %s/8000\r\na=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-15\r\n", addr.Port(), pt, o.eventPT, pt, o.codec, o.eventPT, o.eventPT)
	} else {
		fmt.Fprintf(&b, "m=audio %d RTP/AVP %d\r\na=rtpmap:%d %s/8000\r\n", addr.Port(), pt, pt, o.codec)
	}
	b.WriteString("a=ptime:20\r\na=sendrecv\r\n")
	return []byte(b.String())
}

// endpoint is the mailbox's RTP socket of one call: it plays audio paced
// at 20 ms, passes received audio to a recorder when one is set and key
// presses to keys. It latches to the source of the first packet and then
// takes packets from elsewhere only with that packet's SSRC (the caller
// moved), following them.
type endpoint struct {
	conn  *net.UDPConn
	codec Codec
	ev    int
	keys  chan byte
	log   *slog.Logger

	mu       sync.Mutex
	remote   netip.AddrPort
	latched  bool
	inSSRC   uint32 // of the caller's first packet
	rec      *Recorder
	recFull  chan struct{}
	lastRecv time.Time
	dig      digits

	seq  uint16
	ts   uint32
	ssrc uint32
}

func newEndpoint(conn *net.UDPConn, o offer, ssrc uint32) *endpoint {
	return &endpoint{conn: conn, codec: o.codec, ev: o.eventPT, remote: o.remote, keys: make(chan byte, 16), ssrc: ssrc, seq: uint16(ssrc >> 3), ts: ssrc << 1}
}

// local is the address the socket is bound to.
func (e *endpoint) local() netip.AddrPort {
	return e.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// receive reads packets until the socket is closed.
func (e *endpoint) receive() {
	buf := make([]byte, 1500)
	for {
		n, src, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		e.mu.Lock()
		switch {
		case !e.latched:
			e.remote, e.inSSRC, e.latched = src, p.SSRC, true
		case src != e.remote && p.SSRC != e.inSSRC:
			// Not the caller: neither its audio nor its keys (a key
			// may delete a message).
			e.mu.Unlock()
			continue
		case src != e.remote:
			e.remote = src // the caller's stream, moved by its NAT
		}
		e.lastRecv = time.Now()
		if e.ev >= 0 && int(p.PayloadType) == e.ev {
			k := e.dig.press(p.Timestamp, p.Payload)
			e.mu.Unlock()
			if k != 0 && e.log != nil {
				e.log.Debug("key pressed", "key", string(k))
			}
			if k != 0 {
				select {
				case e.keys <- k:
				default: // the owner pressed faster than we listen
				}
			}
			continue
		}
		if _, ok := codecOf(p.PayloadType); !ok && e.log != nil {
			e.log.Debug("RTP of another payload type ignored", "pt", p.PayloadType, "from", src)
		}
		if e.rec != nil && e.rec.Add(&p) && e.recFull != nil {
			close(e.recFull)
			e.recFull = nil
		}
		e.mu.Unlock()
	}
}

// record starts passing audio to r; the returned channel closes when r is
// full.
func (e *endpoint) record(r *Recorder) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	full := make(chan struct{})
	e.rec, e.recFull = r, full
	return full
}

// stopRecording ends what record started.
func (e *endpoint) stopRecording() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rec, e.recFull = nil, nil
}

// idle is how long no packet arrived (since start when none did).
func (e *endpoint) idle(start time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastRecv.IsZero() {
		return time.Since(start)
	}
	return time.Since(e.lastRecv)
}

// play sends audio in 20 ms packets. With interruptible it stops at the
// first key and returns it; else keys wait in their queue.
func (e *endpoint) play(ctx context.Context, audio []byte, interruptible bool) (byte, error) {
	const frame = 160
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var keys <-chan byte
	if interruptible {
		keys = e.keys
	}
	for off := 0; off < len(audio); off += frame {
		chunk := audio[off:min(off+frame, len(audio))]
		if err := e.send(chunk, off == 0); err != nil {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case k := <-keys:
			return k, nil
		case <-tick.C:
		}
	}
	return 0, nil
}

// send writes one packet of audio to the caller.
func (e *endpoint) send(payload []byte, marker bool) error {
	e.mu.Lock()
	to := e.remote
	p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: marker, PayloadType: e.codec.PayloadType(), SequenceNumber: e.seq, Timestamp: e.ts, SSRC: e.ssrc}, Payload: payload}
	e.seq++
	e.ts += uint32(len(payload))
	e.mu.Unlock()
	if !to.IsValid() {
		return nil // nowhere to send yet: the caller's first packet says where
	}
	b, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("building an RTP packet: %w", err)
	}
	if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
		return fmt.Errorf("sending RTP to %s: %w", to, err)
	}
	return nil
}

// waitKey waits up to d for a key.
func (e *endpoint) waitKey(ctx context.Context, d time.Duration) (byte, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case k := <-e.keys:
		return k, nil
	case <-t.C:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
