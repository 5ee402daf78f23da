// Package announce tells a LAN that this box now holds an address: a
// gratuitous ARP for IPv4 (in both styles hosts honour), an unsolicited
// neighbour advertisement for IPv6. The VIP sends it when it moves, init
// when a NIC's link comes up with the box's own address.
package announce

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Announcer tells the LAN that this box now holds an address.
type Announcer interface {
	// Announce sends the announcement once.
	Announce() error
	Close() error
}

// New opens an Announcer of ip on the interface iface.
func New(iface string, ip netip.Addr) (Announcer, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("finding interface %s: %w", iface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", iface)
	}
	if ip.Is4() {
		return newARPAnnouncer(ifi, ip)
	}
	return newNDPAnnouncer(ifi, ip)
}

// arpAnnouncer sends gratuitous ARP in both styles, as Linux and
// keepalived do, since hosts differ in which they honour: a request for
// the address from itself, and a reply whose target is the sender (Linux
// treats a reply as gratuitous only then).
type arpAnnouncer struct {
	conn   *packet.Conn
	frames [][]byte
}

func newARPAnnouncer(ifi *net.Interface, ip netip.Addr) (*arpAnnouncer, error) {
	frames, err := GARPFrames(ifi.HardwareAddr, ip)
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("opening an ARP socket on %s: %w", ifi.Name, err)
	}
	return &arpAnnouncer{conn: conn, frames: frames}, nil
}

// GARPFrames builds the request-style and reply-style gratuitous ARP
// frames announcing that mac holds ip.
func GARPFrames(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	zero := make(net.HardwareAddr, len(mac))
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, zero, ip)
	if err != nil {
		return nil, fmt.Errorf("building a gratuitous ARP request: %w", err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, ip, mac, ip)
	if err != nil {
		return nil, fmt.Errorf("building a gratuitous ARP reply: %w", err)
	}
	var frames [][]byte
	for _, p := range []*arp.Packet{req, rep} {
		f, err := ARPFrame(p, ethernet.Broadcast)
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// ARPFrame is p in an Ethernet frame to dst.
func ARPFrame(p *arp.Packet, dst net.HardwareAddr) ([]byte, error) {
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding an ARP packet: %w", err)
	}
	f := &ethernet.Frame{Destination: dst, Source: p.SenderHardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: payload}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding an Ethernet frame: %w", err)
	}
	return b, nil
}

func (a *arpAnnouncer) Announce() error {
	for _, f := range a.frames {
		if _, err := a.conn.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("sending a gratuitous ARP: %w", err)
		}
	}
	return nil
}

func (a *arpAnnouncer) Close() error { return a.conn.Close() }

// ndpAnnouncer sends unsolicited neighbour advertisements (RFC 4861
// 7.2.6): to all nodes, override flag set, solicited flag clear, with
// our link-layer address, hop limit 255.
type ndpAnnouncer struct {
	conn *icmp.PacketConn
	msg  []byte
	dst  *net.IPAddr
}

func newNDPAnnouncer(ifi *net.Interface, ip netip.Addr) (*ndpAnnouncer, error) {
	msg, err := NAMessage(ifi.HardwareAddr, ip)
	if err != nil {
		return nil, err
	}
	conn, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("opening an ICMPv6 socket: %w", err)
	}
	pc := conn.IPv6PacketConn()
	if err := pc.SetMulticastHopLimit(255); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting the hop limit of neighbour advertisements: %w", err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		conn.Close()
		return nil, fmt.Errorf("choosing %s for neighbour advertisements: %w", ifi.Name, err)
	}
	// Ours would come back to us through the loop.
	_ = pc.SetMulticastLoopback(false)
	return &ndpAnnouncer{conn: conn, msg: msg, dst: &net.IPAddr{IP: net.IPv6linklocalallnodes, Zone: ifi.Name}}, nil
}

// NAMessage builds an unsolicited neighbour advertisement for ip at mac.
// The kernel fills in the checksum of ICMPv6 raw sockets.
func NAMessage(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	const overrideFlag = 0x20
	body := make([]byte, 0, 4+16+8)
	body = append(body, overrideFlag, 0, 0, 0)
	t := ip.As16()
	body = append(body, t[:]...)
	// Target link-layer address option: type 2, length in units of 8 bytes.
	body = append(body, 2, 1)
	body = append(body, mac...)
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("encoding a neighbour advertisement: %w", err)
	}
	return b, nil
}

func (n *ndpAnnouncer) Announce() error {
	if _, err := n.conn.WriteTo(n.msg, n.dst); err != nil {
		return fmt.Errorf("sending a neighbour advertisement: %w", err)
	}
	return nil
}

func (n *ndpAnnouncer) Close() error { return n.conn.Close() }
