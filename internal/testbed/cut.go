package testbed

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CutLink cuts one of a node's links. A Silent cut drops every frame at
// both ends with an nftables netdev ingress rule (the box's interface and,
// for the LAN, its switch port; for the crossover, both boxes' ends), so
// both sides keep carrier. A Carrier cut sets the switch port down for the
// LAN, so the node's interface loses carrier while staying up, and sets
// the node's own end of the crossover down, so the twin's end loses
// carrier. Cutting a cut link again adds to the cut; Heal undoes all.
func (b *Bed) CutLink(ctx context.Context, n Node, p Path, mode CutMode) error {
	if _, err := b.hostNumber(n); err != nil {
		return fmt.Errorf("cutting a link: %w", err)
	}
	if p == Crossover && n.Twin() == "" {
		return fmt.Errorf("cutting a link: %s has no crossover", n)
	}
	var rules []cutRule
	switch {
	case mode == Silent && p == LAN:
		rules = []cutRule{
			{ns: b.NS(n), table: "tpcut", link: LANInterface},
			{ns: b.SwitchNS(), table: "tpcut_" + port(n), link: port(n)},
		}
	case mode == Silent:
		rules = []cutRule{
			{ns: b.NS(n), table: "tpcutx", link: CrossoverInterface},
			{ns: b.NS(n.Twin()), table: "tpcutx", link: CrossoverInterface},
		}
	case p == LAN:
		rules = []cutRule{{ns: b.SwitchNS(), link: port(n)}}
	default:
		rules = []cutRule{{ns: b.NS(n), link: CrossoverInterface}}
	}
	for _, r := range rules {
		if err := r.apply(ctx); err != nil {
			return fmt.Errorf("cutting %s's %s (%s): %w", n, p, mode, err)
		}
		b.mu.Lock()
		k := cutKey{n, p}
		if !slices.Contains(b.cuts[k], r) {
			b.cuts[k] = append(b.cuts[k], r)
		}
		b.mu.Unlock()
	}
	b.log.Info("link cut", "node", n, "path", p, "mode", mode)
	return nil
}

// Heal undoes every cut of a node's link.
func (b *Bed) Heal(ctx context.Context, n Node, p Path) error {
	k := cutKey{n, p}
	b.mu.Lock()
	rules := b.cuts[k]
	b.mu.Unlock()
	for i := len(rules) - 1; i >= 0; i-- {
		if err := rules[i].undo(ctx); err != nil {
			return fmt.Errorf("healing %s's %s: %w", n, p, err)
		}
		b.mu.Lock()
		b.cuts[k] = slices.DeleteFunc(b.cuts[k], func(r cutRule) bool { return r == rules[i] })
		b.mu.Unlock()
	}
	b.log.Info("link healed", "node", n, "path", p)
	return nil
}

// HealAll undoes every cut of the bed.
func (b *Bed) HealAll(ctx context.Context) error {
	b.mu.Lock()
	var keys []cutKey
	for k, rules := range b.cuts {
		if len(rules) > 0 {
			keys = append(keys, k)
		}
	}
	b.mu.Unlock()
	for _, k := range keys {
		if err := b.Heal(ctx, k.node, k.path); err != nil {
			return err
		}
	}
	return nil
}

func (r cutRule) apply(ctx context.Context) error {
	if r.table == "" {
		return ipIn(ctx, r.ns, "link", "set", r.link, "down")
	}
	rules := fmt.Sprintf("table netdev %s {\n\tchain in {\n\t\ttype filter hook ingress device %q priority -500; policy drop;\n\t}\n}\n", r.table, r.link)
	return nft(ctx, r.ns, rules)
}

func (r cutRule) undo(ctx context.Context) error {
	if r.table == "" {
		return ipIn(ctx, r.ns, "link", "set", r.link, "up")
	}
	return nft(ctx, r.ns, "delete table netdev "+r.table+"\n")
}

// nft loads a ruleset into a namespace's nftables.
func nft(ctx context.Context, ns, ruleset string) error {
	cmd := commandIn(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PowerOff kills every process in a node's namespace and sets its
// interfaces down, as if its power were cut: its switch port and its
// twin's crossover end lose carrier.
func (b *Bed) PowerOff(ctx context.Context, n Node) error {
	if _, err := b.hostNumber(n); err != nil {
		return fmt.Errorf("powering off: %w", err)
	}
	b.mu.Lock()
	var procs []*Process
	for p, node := range b.procs {
		if node == n {
			procs = append(procs, p)
		}
	}
	b.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	killNamespace(ctx, b.NS(n))
	for _, link := range b.links(n) {
		if err := ipIn(ctx, b.NS(n), "link", "set", link, "down"); err != nil {
			return fmt.Errorf("powering off %s: %w", n, err)
		}
	}
	b.log.Info("powered off", "node", n)
	return nil
}

// PowerOn sets a powered-off node's interfaces up again; starting its
// processes is the caller's job.
func (b *Bed) PowerOn(ctx context.Context, n Node) error {
	if _, err := b.hostNumber(n); err != nil {
		return fmt.Errorf("powering on: %w", err)
	}
	for _, link := range b.links(n) {
		if err := ipIn(ctx, b.NS(n), "link", "set", link, "up"); err != nil {
			return fmt.Errorf("powering on %s: %w", n, err)
		}
	}
	b.log.Info("powered on", "node", n)
	return nil
}

// Signal sends sig to every process the bed started for a node: SIGSTOP
// hangs the box's software (its kernel still answers ARP and ping),
// SIGCONT resumes it.
func (b *Bed) Signal(n Node, sig syscall.Signal) error {
	b.mu.Lock()
	var procs []*Process
	for p, node := range b.procs {
		if node == n {
			procs = append(procs, p)
		}
	}
	b.mu.Unlock()
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.Signal(sig))
	}
	return errors.Join(errs...)
}

func (b *Bed) links(n Node) []string {
	if n.Twin() != "" {
		return []string{LANInterface, CrossoverInterface}
	}
	return []string{LANInterface}
}

// Carrier reports whether a node's interface for a path is up with
// carrier (IFF_UP and IFF_LOWER_UP), as the node's own NIC monitor sees it.
func (b *Bed) Carrier(n Node, p Path) (bool, error) {
	iface := LANInterface
	if p == Crossover {
		iface = CrossoverInterface
	}
	var up bool
	err := b.InNS(b.NS(n), func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return err
		}
		f := l.Attrs().RawFlags
		up = f&unix.IFF_UP != 0 && f&unix.IFF_LOWER_UP != 0
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reading the carrier of %s's %s: %w", n, iface, err)
	}
	return up, nil
}
