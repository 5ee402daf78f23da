package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends ICMP echo requests from a node to addr, one every 50 ms,
// until one is answered (nil) or ctx ends (an error). The machine has no
// ping command; this is the bed's own.
func (b *Bed) Ping(ctx context.Context, from Node, addr netip.Addr) error {
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if addr.Is6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var conn *icmp.PacketConn
	err := b.InNS(b.NS(from), func() error {
		var err error
		conn, err = icmp.ListenPacket(network, listen)
		return err
	})
	if err != nil {
		return fmt.Errorf("opening an ICMP socket in %s: %w", from, err)
	}
	defer conn.Close()

	id := os.Getpid() & 0xffff
	got := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != reply {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || string(e.Data) != "twinpbx testbed" {
				continue
			}
			if ip, ok := peer.(*net.IPAddr); ok && ip.IP.Equal(addr.AsSlice()) {
				select {
				case got <- struct{}{}:
				default:
				}
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	dst := &net.IPAddr{IP: addr.AsSlice()}
	for seq := 1; ; seq++ {
		msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: []byte("twinpbx testbed")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			return fmt.Errorf("building an echo request: %w", err)
		}
		// A send error (no route while a link is down) is an unanswered
		// ping, not a reason to stop.
		_, _ = conn.WriteTo(wb, dst)
		select {
		case <-got:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("pinging %s from %s: %w", addr, from, errors.Join(ctx.Err(), errNoAnswer))
		case <-tick.C:
		}
	}
}

var errNoAnswer = errors.New("no answer")

// PingWithin is Ping with a timeout.
func (b *Bed) PingWithin(from Node, addr netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return b.Ping(ctx, from, addr)
}
