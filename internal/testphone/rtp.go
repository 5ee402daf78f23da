package testphone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtp"
	psdp "github.com/pion/sdp/v3"
)

// Interval is the RTP packet interval: 20 ms of G.711.
const Interval = 20 * time.Millisecond

// RTP sends a G.711 µ-law stream of silence from one socket and records
// when each packet of the other side's stream arrived.
type RTP struct {
	Local netip.AddrPort

	conn *net.UDPConn
	ssrc uint32

	mu       sync.Mutex
	arrivals []Arrival
	bad      int // datagrams that were not RTP
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Arrival is one received RTP packet.
type Arrival struct {
	At  time.Time
	Seq uint16
}

// ListenRTP opens the RTP socket on local (in whatever namespace the
// caller is in) and starts receiving.
func ListenRTP(local netip.AddrPort) (*RTP, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("opening the RTP socket: %w", err)
	}
	r := &RTP{conn: conn, Local: local, ssrc: uint32(local.Addr().As4()[3])<<16 | uint32(local.Port())}
	r.wg.Add(1)
	go r.receive()
	return r, nil
}

func (r *RTP) receive() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error while no box holds the VIP
		}
		now := time.Now()
		var pkt rtp.Packet
		r.mu.Lock()
		if pkt.Unmarshal(buf[:n]) != nil || pkt.Version != 2 {
			r.bad++
		} else {
			r.arrivals = append(r.arrivals, Arrival{At: now, Seq: pkt.SequenceNumber})
		}
		r.mu.Unlock()
	}
}

// Send starts sending a packet every 20 ms to dst until StopSending.
func (r *RTP) Send(dst netip.AddrPort) {
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel()
	}
	r.cancel = cancel
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		payload := make([]byte, 160) // 20 ms of µ-law silence
		for i := range payload {
			payload[i] = 0xff
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: r.ssrc}, Payload: payload}
		tick := time.NewTicker(Interval)
		defer tick.Stop()
		for {
			b, err := pkt.Marshal()
			if err == nil {
				// Sends fail while nobody holds the VIP: that audio is lost.
				_, _ = r.conn.WriteToUDPAddrPort(b, dst)
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 160
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// StopSending stops the stream; received packets are still recorded.
func (r *RTP) StopSending() {
	r.mu.Lock()
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Close stops sending and receiving.
func (r *RTP) Close() {
	r.StopSending()
	_ = r.conn.Close()
	r.wg.Wait()
}

// Received returns a copy of the arrivals so far.
func (r *RTP) Received() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.arrivals)
}

// ReceivedSince counts packets that arrived after t.
func (r *RTP) ReceivedSince(t time.Time) int {
	n := 0
	for _, a := range r.Received() {
		if a.At.After(t) {
			n++
		}
	}
	return n
}

// MediaAddr reads the audio address of an SDP body.
func MediaAddr(body []byte) (netip.AddrPort, error) {
	var s psdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return netip.AddrPort{}, fmt.Errorf("parsing SDP: %w", err)
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" {
			continue
		}
		c := s.ConnectionInformation
		if m.ConnectionInformation != nil {
			c = m.ConnectionInformation
		}
		if c == nil || c.Address == nil {
			return netip.AddrPort{}, errors.New("SDP without a connection address")
		}
		a, err := netip.ParseAddr(c.Address.Address)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("SDP connection address: %w", err)
		}
		if m.MediaName.Port.Value <= 0 || m.MediaName.Port.Value > 65535 {
			return netip.AddrPort{}, fmt.Errorf("SDP audio port %d", m.MediaName.Port.Value)
		}
		return netip.AddrPortFrom(a, uint16(m.MediaName.Port.Value)), nil
	}
	return netip.AddrPort{}, errors.New("SDP without audio")
}
