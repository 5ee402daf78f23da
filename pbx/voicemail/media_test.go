package voicemail

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// loopback opens the endpoint's socket and a phone's, each knowing the
// other, and starts the endpoint's receiver.
func loopback(t *testing.T) (*endpoint, *net.UDPConn) {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ours, phone := listen(), listen()
	ep := newEndpoint(ours, offer{codec: PCMA, eventPT: 101, remote: phone.LocalAddr().(*net.UDPAddr).AddrPort()}, 42)
	go ep.receive()
	return ep, phone
}

func TestEndpointRecords(t *testing.T) {
	ep, phone := loopback(t)
	r := NewRecorder(time.Second)
	full := ep.record(r)
	to := net.UDPAddrFromAddrPort(ep.local())
	// 60 ms of audio in three packets, the last two swapped, then a key.
	for _, i := range []int{0, 2, 1} {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(160 * i), SSRC: 9}, Payload: bytes.Repeat([]byte{byte(i + 1)}, 160)}
		b, _ := p.Marshal()
		if _, err := phone.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	ev := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 3, Timestamp: 480, SSRC: 9}, Payload: []byte{7, 0x0a, 0, 160}}
	b, _ := ev.Marshal()
	for range 3 { // sent repeatedly, as phones do: one key
		if _, err := phone.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	k, err := ep.waitKey(context.Background(), 10*time.Second)
	if err != nil || k != '7' {
		t.Fatalf("key %q (%v), want 7", k, err)
	}
	if k, _ := ep.waitKey(context.Background(), 50*time.Millisecond); k != 0 {
		t.Errorf("a repeated event gave a second key %q", k)
	}
	ep.stopRecording()
	want := append(append(bytes.Repeat([]byte{1}, 160), bytes.Repeat([]byte{2}, 160)...), bytes.Repeat([]byte{3}, 160)...)
	if got := r.Audio(); !bytes.Equal(got, want) {
		t.Errorf("recorded %d samples, not the three packets in order", len(got))
	}
	select {
	case <-full:
		t.Error("a 60 ms message reported full")
	default:
	}
}

// TestEndpointIgnoresOtherSenders: once the caller's first packet came,
// a key from another address and SSRC is not taken; the caller's own
// stream from a new address (its NAT moved it) is, and followed.
func TestEndpointIgnoresOtherSenders(t *testing.T) {
	ep, phone := loopback(t)
	to := net.UDPAddrFromAddrPort(ep.local())
	send := func(c *net.UDPConn, ssrc uint32, seq uint16, pt uint8, payload []byte) {
		t.Helper()
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}
		b, _ := p.Marshal()
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	other := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	stranger, moved := other(), other()
	send(phone, 9, 1, 8, bytes.Repeat([]byte{0xd5}, 160))
	send(stranger, 77, 2, 101, []byte{7, 0x8a, 0, 160})
	send(phone, 9, 3, 101, []byte{5, 0x8a, 0, 160})
	send(moved, 9, 4, 101, []byte{3, 0x8a, 0, 160})
	for _, want := range []byte{'5', '3'} {
		k, err := ep.waitKey(context.Background(), 10*time.Second)
		if err != nil || k != want {
			t.Fatalf("key %q (%v), want %q", k, err, want)
		}
	}
	ep.mu.Lock()
	remote := ep.remote
	ep.mu.Unlock()
	if remote != moved.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("sending to %s, not to the caller's new address", remote)
	}
}

func TestEndpointPlays(t *testing.T) {
	ep, phone := loopback(t)
	audio := tone(nil, PCMA, 100, 1000) // five packets
	done := make(chan error, 1)
	go func() {
		_, err := ep.play(context.Background(), audio, false)
		done <- err
	}()
	var got []byte
	var last rtp.Packet
	buf := make([]byte, 1500)
	for range 5 {
		_ = phone.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := phone.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if p.PayloadType != 8 || len(p.Payload) != 160 || (len(got) > 0 && (p.SequenceNumber != last.SequenceNumber+1 || p.Timestamp != last.Timestamp+160)) {
			t.Fatalf("packet pt %d, %d bytes, seq %d ts %d after seq %d ts %d", p.PayloadType, len(p.Payload), p.SequenceNumber, p.Timestamp, last.SequenceNumber, last.Timestamp)
		}
		got = append(got, p.Payload...)
		last = p
	}
	if !bytes.Equal(got, audio) {
		t.Error("the phone heard other audio than was played")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEndpointKeyInterrupts(t *testing.T) {
	ep, _ := loopback(t)
	ep.keys <- '#'
	k, err := ep.play(context.Background(), tone(nil, PCMU, 10000, 440), true)
	if err != nil || k != '#' {
		t.Fatalf("play returned %q, %v; want the key #", k, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ep.play(ctx, tone(nil, PCMU, 10000, 440), false); err == nil {
		t.Fatal("play went on after its context ended")
	}
}
