package twin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/cluster/vip"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/hw/relay"
)

// probe implements cluster.Probe: the VIP probe with SIP OPTIONS and the
// tie-breaker with ARP.
type probe struct {
	sip     sipProber
	peer    string
	iface   string
	gateway netip.Addr
	// arpWait bounds the wait for the gateway's ARP reply.
	arpWait time.Duration
	// span is the VIP probe's span (cluster.Config.ProbeSpan).
	span time.Duration
	log  *slog.Logger

	mu  sync.Mutex // the loop calls one at a time; status may look
	arp *arp.Client
}

var _ cluster.Probe = (*probe)(nil)

// VIPAnswers reports whether the twin answers OPTIONS on the VIP: three
// tries spread over the probe span (cluster.ProbeSpanFor: 100 ms, 50 ms
// apart, with the default timing), as docs/CLUSTER.md documents it: a
// lost datagram or a twin busy for a moment gets two more chances, and
// the probe ends half a span after its last try. The manager counts a
// lease renewed after the probe from the probe's end, so its length does
// not eat into that lease. Only an answer naming the twin counts.
func (p *probe) VIPAnswers(ctx context.Context) bool {
	node, err := p.sip.ask(ctx, 3, p.span/2)
	return err == nil && node == p.peer
}

// GatewayOK sends an ARP request for the gateway on the LAN interface and
// reports whether it was answered within arpWait.
func (p *probe) GatewayOK(ctx context.Context) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.arp == nil {
		ifi, err := net.InterfaceByName(p.iface)
		if err != nil {
			return false
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			p.log.Debug("opening the ARP socket", "iface", p.iface, "err", err)
			return false
		}
		p.arp = c
	}
	deadline := time.Now().Add(p.arpWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.arp.SetDeadline(deadline); err != nil {
		p.closeLocked()
		return false
	}
	if _, err := p.arp.Resolve(p.gateway); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			// The socket broke (interface gone, down and up): open
			// another next time.
			p.closeLocked()
		}
		return false
	}
	return true
}

func (p *probe) closeLocked() {
	if p.arp != nil {
		_ = p.arp.Close()
		p.arp = nil
	}
}

func (p *probe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

// terms keeps the term in the store. The key replicates with the rest of
// the store: the twin learns the term of the active, and since every
// takeover takes a term above both boxes' (and the higher term wins when
// two actives meet), a replicated term can only help.
type terms struct{ st *store.Store }

// Terms' bucket and key in the store.
const (
	termBucket = "cluster"
	termKey    = "term"
)

var _ cluster.TermStore = terms{}

func (t terms) Term() uint64 {
	var v uint64
	_ = t.st.View(func(tx *store.Tx) error {
		if b := tx.Get(termBucket, termKey); len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v
}

func (t terms) SetTerm(v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if err := t.st.Update(func(tx *store.Tx) error { return tx.Put(termBucket, termKey, b[:]) }); err != nil {
		return fmt.Errorf("saving term %d: %w", v, err)
	}
	return nil
}

// vipAdapter adapts vip.VIP to cluster.VIP.
type vipAdapter struct {
	v   *vip.VIP
	ctx context.Context // the node's lifetime: the refreshes run in it
}

var _ cluster.VIP = vipAdapter{}

// Acquire adds the VIP; the refreshes outlive the call (they stop with
// Release or the node's end), so the decision loop's context is not used
// for them.
func (a vipAdapter) Acquire(context.Context) error {
	err := a.v.Acquire(a.ctx)
	if errors.Is(err, vip.ErrAnnounce) {
		// Held, only the first announcement failed; the refreshes go on.
		return nil
	}
	return err
}

func (a vipAdapter) Release() error      { return a.v.Release() }
func (a vipAdapter) Held() (bool, error) { return a.v.Held() }
func (a vipAdapter) RemoveStale() error {
	cfg := a.v.Config()
	_, err := vip.RemoveStale(cfg.Interface, cfg.Addr)
	return err
}

func (a vipAdapter) Conflict(ctx context.Context) (bool, error) {
	_, found, err := a.v.Conflict(ctx)
	return found, err
}

// noRelay stands in on a board without a PSTN relay: nothing to switch.
type noRelay struct{ side atomic.Int32 }

func (r *noRelay) Select(_ context.Context, s relay.Side) error {
	r.side.Store(int32(s))
	return nil
}

func (r *noRelay) Position(context.Context) (relay.Side, bool, error) {
	return relay.Side(r.side.Load()), false, nil
}

// relaySide is the side of the PSTN relay that connects the line to node:
// the lexically lower of the two node names is side A (the relay's rest
// position), the other side B.
func relaySide(node, peer string) relay.Side {
	if node < peer {
		return relay.A
	}
	return relay.B
}

// carrierCheck fails while the LAN interface is not up with carrier.
func carrierCheck(iface string) func(context.Context) error {
	return func(context.Context) error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("reading %s: %w", iface, err)
		}
		a := l.Attrs()
		if a.Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s is down", iface)
		}
		if a.RawFlags&lowerUp == 0 {
			return fmt.Errorf("%s has no carrier", iface)
		}
		return nil
	}
}

// lowerUp is IFF_LOWER_UP: the interface has carrier.
const lowerUp = 0x10000

// storeCheck fails while the store cannot be read.
func storeCheck(st *store.Store) func(context.Context) error {
	return func(context.Context) error {
		return st.View(func(tx *store.Tx) error {
			_ = tx.Get(termBucket, termKey)
			return nil
		})
	}
}

// vipCheck fails while the active does not hold the VIP.
func vipCheck(v *vip.VIP) func(context.Context) error {
	return func(context.Context) error {
		held, err := v.Held()
		if err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("the VIP %s is not on %s", v.Config().Addr, v.Config().Interface)
		}
		return nil
	}
}

// sipTarget is the VIP's SIP port: the port of the first UDP listener.
func sipTarget(cfg *config.Config, vipAddr netip.Addr) netip.AddrPort {
	for _, l := range cfg.SIP.Listen {
		if ls, err := config.ParseListen(l); err == nil && ls.Transport == "udp" {
			return netip.AddrPortFrom(vipAddr, uint16(ls.Port))
		}
	}
	return netip.AddrPortFrom(vipAddr, 5060)
}
