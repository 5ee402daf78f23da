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

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

func (v *VIP) conflict6(ctx context.Context) (net.HardwareAddr, bool, error) {
	ip := v.cfg.Addr.Addr()
	ifi, err := net.InterfaceByName(v.cfg.Interface)
	if err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: finding interface %s: %w", ip, v.cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, false, fmt.Errorf("probing for VIP %s: interface %s has no Ethernet address", ip, v.cfg.Interface)
	}
	conn, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: opening an ICMPv6 socket: %w", ip, err)
	}
	defer conn.Close()
	pc := conn.IPv6PacketConn()
	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := pc.SetICMPFilter(&filter); err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: %w", ip, err)
	}
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: %w", ip, err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return nil, false, fmt.Errorf("probing for VIP %s: %w", ip, err)
	}
	ns, err := nsMessage(ifi.HardwareAddr, ip)
	if err != nil {
		return nil, false, err
	}
	dst := &net.IPAddr{IP: solicitedNode(ip).AsSlice(), Zone: ifi.Name}

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(conflictWait)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1500)
	for _, until := range []time.Time{time.Now().Add(time.Until(deadline) / 2), deadline} {
		if _, err := conn.WriteTo(ns, dst); err != nil {
			return nil, false, fmt.Errorf("probing for VIP %s: sending a neighbour solicitation: %w", ip, err)
		}
		_ = conn.SetReadDeadline(until)
		for ctx.Err() == nil {
			n, _, err := conn.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return nil, false, fmt.Errorf("probing for VIP %s: reading ICMPv6: %w", ip, err)
			}
			if mac, ok := naClaims(buf[:n], ip, ifi.HardwareAddr); ok {
				return mac, true, nil
			}
		}
	}
	return nil, false, nil
}

// nsMessage builds a neighbour solicitation for target with our
// link-layer address as the source option.
func nsMessage(mac net.HardwareAddr, target netip.Addr) ([]byte, error) {
	t := target.As16()
	body := append(make([]byte, 4, 4+16+8), t[:]...)
	body = append(body, 1, 1) // source link-layer address option
	body = append(body, mac...)
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: body}}
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("encoding a neighbour solicitation: %w", err)
	}
	return b, nil
}

// solicitedNode is the solicited-node multicast address of ip.
func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

// naClaims reads an ICMPv6 message and reports the link-layer address of
// a neighbour advertisement for ip that is not ours. Malformed messages
// claim nothing.
func naClaims(msg []byte, ip netip.Addr, ours net.HardwareAddr) (net.HardwareAddr, bool) {
	// type, code, checksum, flags+reserved, target
	if len(msg) < 24 || msg[0] != byte(ipv6.ICMPTypeNeighborAdvertisement) || msg[1] != 0 {
		return nil, false
	}
	if target, _ := netip.AddrFromSlice(msg[8:24]); target != ip {
		return nil, false
	}
	for opts := msg[24:]; len(opts) >= 8; {
		typ, size := opts[0], int(opts[1])*8
		if size == 0 || size > len(opts) {
			return nil, false
		}
		if typ == 2 && size >= 8 {
			mac := net.HardwareAddr(opts[2:8])
			if bytes.Equal(mac, ours) {
				return nil, false
			}
			return append(net.HardwareAddr(nil), mac...), true
		}
		opts = opts[size:]
	}
	return nil, false
}
