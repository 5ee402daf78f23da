package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"

	"github.com/twinpbx/twinpbx/internal/announce"
)

// conflictWait is how long Conflict listens when ctx has no deadline.
const conflictWait = 100 * time.Millisecond

// Conflict asks the LAN who has the VIP with an ARP probe (sender address
// 0.0.0.0, so no neighbour table learns anything from it) and reports the
// first other MAC that answers or announces the VIP, e.g. a hung twin
// whose kernel still holds it. It listens until ctx ends or, without a
// deadline, for 100 ms, probing twice. For an IPv6 VIP it sends
// neighbour solicitations from this box's link-local address instead and
// reports an advertisement for the VIP with another link-layer address.
func (v *VIP) Conflict(ctx context.Context) (mac net.HardwareAddr, found bool, err error) {
	ip := v.cfg.Addr.Addr()
	if ip.Is6() {
		return v.conflict6(ctx)
	}
	ifi, err := net.InterfaceByName(v.cfg.Interface)
	if err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: finding interface %s: %w", ip, v.cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, false, fmt.Errorf("probing for VIP %s: interface %s has no Ethernet address", ip, v.cfg.Interface)
	}
	probe, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), ip)
	if err != nil {
		return nil, false, fmt.Errorf("building an ARP probe: %w", err)
	}
	frame, err := announce.ARPFrame(probe, ethernet.Broadcast)
	if err != nil {
		return nil, false, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: opening an ARP socket: %w", ip, err)
	}
	defer func() { go conn.Close() }() // a packet socket's close is slow

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(conflictWait)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: %w", ip, err)
	}
	send := func() error {
		if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("probing for VIP %s: sending an ARP probe: %w", ip, err)
		}
		return nil
	}
	if err := send(); err != nil {
		return nil, false, err
	}
	second := time.Now().Add(time.Until(deadline) / 2)
	sentSecond := false
	buf := make([]byte, 1514)
	for {
		if !sentSecond && time.Now().After(second) {
			sentSecond = true
			if err := send(); err != nil {
				return nil, false, err
			}
		}
		if !sentSecond {
			_ = conn.SetReadDeadline(second)
		} else {
			_ = conn.SetReadDeadline(deadline)
		}
		if ctx.Err() != nil {
			return nil, false, nil
		}
		n, _, err := conn.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if sentSecond || ctx.Err() != nil {
				return nil, false, nil
			}
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("probing for VIP %s: reading ARP: %w", ip, err)
		}
		if mac, ok := claims(buf[:n], ip, ifi.HardwareAddr); ok {
			return mac, true, nil
		}
	}
}

// claims reports the sender of an ARP frame that says another host holds
// ip: its sender address is ip and its sender MAC is not ours. Malformed
// frames claim nothing.
func claims(frame []byte, ip netip.Addr, ours net.HardwareAddr) (net.HardwareAddr, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, false
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, false
	}
	if p.SenderIP != ip || bytes.Equal(p.SenderHardwareAddr, ours) || len(p.SenderHardwareAddr) == 0 {
		return nil, false
	}
	return append(net.HardwareAddr(nil), p.SenderHardwareAddr...), true
}
