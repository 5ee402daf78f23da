package twin

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
	"github.com/twinpbx/twinpbx/pbx/sipmark"
)

// Both boxes take requests (docs/CLUSTER.md, "Both boxes take requests"):
// besides the PBX on the VIP, each box runs a forwarder on its own LAN
// address (the address `twinpbx dns-records --both` names), with the
// SIP ports of the PBX's listeners. The forwarder is the dispatcher
// (pbx/dispatch) with one backend, the VIP, wherever it is: it passes
// every request on to the active box, Record-Routes dialogs and takes the
// answers back by its Via. A request a phone sent over UDP carries the
// pair's mark (MarkHeader) with the phone's address as its claim, which
// the active's PBX trusts only from the twin's (or its own) addresses and
// with the pairing key's HMAC: its registrar records the phone's own
// address, so the active reaches the phone directly, as if it had
// registered on the VIP. While no box serves the VIP (the twin is not
// active and this box is not serving), the forwarder answers 503 with
// Retry-After: a phone moves on to its next SRV target.

// MarkHeader carries the pair's forwarding mark (pbx/sipmark).
const MarkHeader = "X-Twinpbx-Twin"

// ForwardRetryAfter is the Retry-After of the forwarder's 503 while no
// box serves.
const ForwardRetryAfter = 2 * time.Second

// MarkKey derives the key of the pair's forwarding mark from the pairing
// key: both twins derive the same.
func MarkKey(pairingKey string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(pairingKey), nil, "twinpbx forwarding mark v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the forwarding mark key: %w", err)
	}
	return k, nil
}

// NewMarker returns the pair's forwarding mark for box (a config with a
// cluster section): it signs as this box, and takes marks by the twin
// from its crossover and LAN addresses, and by this box from its own
// (this box's forwarder passes requests to its own PBX while it is
// active).
func NewMarker(box *config.Config) (*sipmark.Marker, error) {
	if box == nil || box.Cluster == nil {
		return nil, errors.New("twin: the config has no cluster section")
	}
	cl := box.Cluster
	key, err := MarkKey(cl.PairingKey)
	if err != nil {
		return nil, err
	}
	ips := func(addrs ...string) []net.IP {
		var out []net.IP
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip != nil {
				out = append(out, ip)
			}
		}
		return out
	}
	peer, self := ips(cl.LAN.Peer, cl.Crossover.Peer), ips(cl.LAN.Local, cl.Crossover.Local)
	name := box.Node.Name
	return sipmark.New(sipmark.Options{
		Header: MarkHeader,
		Key:    key,
		Senders: func(sender string) []net.IP {
			switch sender {
			case cl.Peer:
				return peer
			case name:
				return self
			}
			return nil
		},
	})
}

// forwardWait is the forwarder's gate: 0 (forward) while this box serves
// the VIP or the twin is heard beating as the active; else the wait of
// the 503 that refuses the request.
func forwardWait(serving bool, twin heartbeat.PeerView) time.Duration {
	if serving {
		return 0
	}
	b := twin.Latest.Beat
	if twin.Heard && !twin.Silent && b.Role == heartbeat.RoleActive && b.Flags&heartbeat.Goodbye == 0 {
		return 0
	}
	return ForwardRetryAfter
}

// ForwardWait is forwardWait for this box now. It is asked for every
// request: the twin's view (a copy taken under the heartbeat's lock) is
// read only when this box does not serve.
func (n *Node) ForwardWait() time.Duration {
	if n.Serving() {
		return 0
	}
	var twin heartbeat.PeerView
	if hb := n.hb.Load(); hb != nil {
		twin = hb.Peer()
	}
	return forwardWait(false, twin)
}

// forwarderConfig is the dispatcher config of box's forwarder: a UDP
// listener on the LAN address for each UDP listener of the PBX (listen,
// the running config's sip.listen), a TCP one for each TCP listener, and
// the VIP at the first UDP listener's port as the only backend. A PBX
// listener on a wildcard address already holds the LAN address's port:
// it is skipped. ok is false when no UDP listener is left (nothing to
// forward to).
func forwarderConfig(box *config.Config, listen []string) (cfg dispatch.Config, ok bool, err error) {
	cl := box.Cluster
	lan, err := netip.ParseAddr(cl.LAN.Local)
	if err != nil {
		return cfg, false, fmt.Errorf("twin: cluster.lan.local %q: %w", cl.LAN.Local, err)
	}
	vip, err := netip.ParsePrefix(cl.VIP)
	if err != nil {
		return cfg, false, fmt.Errorf("twin: cluster.vip %q: %w", cl.VIP, err)
	}
	for _, s := range listen {
		l, err := config.ParseListen(s)
		if err != nil {
			return cfg, false, fmt.Errorf("twin: sip.listen %q: %w", s, err)
		}
		if a, err := netip.ParseAddr(l.Host); err != nil || a.IsUnspecified() {
			continue
		}
		at := netip.AddrPortFrom(lan, uint16(l.Port))
		switch l.Transport {
		case "udp":
			if !ok {
				cfg.Backends = []dispatch.Backend{{Addr: netip.AddrPortFrom(vip.Addr(), uint16(l.Port))}}
				ok = true
			}
			cfg.Listen = append(cfg.Listen, at)
		case "tcp":
			cfg.StreamListen = append(cfg.StreamListen, dispatch.StreamListener{Addr: at})
		}
	}
	if !ok {
		return cfg, false, nil
	}
	cfg.Algorithm = dispatch.RoundRobin
	// One backend: nothing to fail over to, and a request the VIP left
	// unanswered during a takeover must not stop the next ones (the
	// gate, not the probes, says whether a box serves).
	cfg.Attempts = 1
	cfg.KeepUp = true
	cfg.ProbeInterval = time.Minute
	cfg.Server = "twinpbx/" + box.Node.Name
	return cfg, true, nil
}

// ForwarderStatus is the forwarder on this box's own address.
type ForwarderStatus struct {
	// Listen are its addresses ("ip:port" for UDP, "tcp:ip:port").
	Listen []string `json:"listen"`
	// Passed counts the requests from phones passed on to the VIP,
	// Refused those answered 503 while no box served.
	Passed  uint64 `json:"passed"`
	Refused uint64 `json:"refused"`
	// Connections are the phones' TCP connections open now.
	Connections *int `json:"connections,omitempty"`
}

// forwarder is a running forwarder, for the status.
type forwarder struct {
	d               *dispatch.Dispatcher
	listen          []string
	passed, refused atomic.Uint64
}

func (f *forwarder) status() *ForwarderStatus {
	return &ForwarderStatus{Listen: f.listen, Passed: f.passed.Load(), Refused: f.refused.Load(),
		Connections: f.d.Status().Connections}
}

// RunForwarder runs this box's forwarder until ctx ends (see MarkHeader):
// listen is the running config's sip.listen, m the pair's mark
// (NewMarker). ready, when set, gets the bound addresses. Without a UDP
// listener in listen it logs why and returns at once.
func (n *Node) RunForwarder(ctx context.Context, listen []string, m *sipmark.Marker, ready func([]string)) error {
	cfg, ok, err := forwarderConfig(n.box, listen)
	if err != nil {
		return err
	}
	log := n.log.With("part", "forwarder")
	if !ok {
		log.Warn("this box's own address takes no SIP: the PBX has no UDP listener on the VIP (sip.listen on a wildcard address holds the box's own address itself)")
		return nil
	}
	node := n.box.Node.Name
	f := &forwarder{}
	cfg.Logger = log
	cfg.Refuse = func() time.Duration {
		wait := n.ForwardWait()
		if wait > 0 {
			f.refused.Add(1)
		}
		return wait
	}
	cfg.Mark = func(req *sip.Request, from netip.AddrPort, transport string) {
		f.passed.Add(1)
		if transport != "udp" {
			// A phone on TCP is reached back over its connection to
			// this forwarder: the active sends to the forwarder, which
			// keeps the flow. A mark the phone put there itself goes.
			req.RemoveHeader(MarkHeader)
			return
		}
		claim := "udp:" + netip.AddrPortFrom(from.Addr().Unmap(), from.Port()).String()
		if err := m.Sign(req, node, claim); err != nil {
			log.Warn("marking a forwarded request", "err", err)
		}
	}
	d, err := dispatch.New(cfg)
	if err != nil {
		return fmt.Errorf("twin: the forwarder: %w", err)
	}
	f.d = d
	defer n.fwd.Store(nil)
	return d.Run(ctx, func(addrs []string) {
		f.listen = addrs
		n.fwd.Store(f)
		log.Info("forwarding SIP from this box's own address to the active box", "listen", addrs, "vip", cfg.Backends[0].Addr)
		if ready != nil {
			ready(addrs)
		}
	})
}
