// Package testbed builds, as root, a small office network out of Linux
// network namespaces for the twin-pair tests: a switch (a bridge in its own
// namespace) with ports to the two boxes, one or more phones and the
// gateway, plus a crossover link straight between the boxes. It cuts and
// heals links (silently or by carrier), powers boxes off, runs commands and
// Go code inside the namespaces, and probes the VIP with SIP OPTIONS from a
// phone the way a phone would notice an outage.
//
// Every bed has its own random name prefix ("tp" + hex) and its own random
// subnets, so beds of parallel test packages never collide. Close removes
// every namespace and process of the bed; a bed whose test binary was
// killed is removed by the next bed built on this machine (see Build).
package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Interface names inside the namespaces.
const (
	// LANInterface is the LAN interface of the boxes, the phones and the
	// gateway.
	LANInterface = "lan0"
	// CrossoverInterface is the crossover interface of both boxes.
	CrossoverInterface = "xover0"
	// BridgeInterface is the bridge in the switch namespace.
	BridgeInterface = "br0"
)

// Node names a member of the bed: one of the boxes, the gateway or a phone
// (see Phone).
type Node string

// The fixed members of every bed.
const (
	A       Node = "a"
	B       Node = "b"
	Gateway Node = "gw"
)

// Phone names the i-th phone, counting from 0.
func Phone(i int) Node { return Node("p" + strconv.Itoa(i+1)) }

// Twin returns the other box, or "" for a node that is not a box.
func (n Node) Twin() Node {
	switch n {
	case A:
		return B
	case B:
		return A
	}
	return ""
}

// Path is one of the two links of a box.
type Path int

// The two paths of a box.
const (
	LAN Path = iota
	Crossover
)

func (p Path) String() string {
	if p == Crossover {
		return "crossover"
	}
	return "lan"
}

// CutMode is how a link is cut.
type CutMode int

const (
	// Silent drops every frame in both directions while both ends keep
	// their carrier, like a broken switch port or a filter: nobody is told.
	Silent CutMode = iota
	// Carrier takes the link down so the box's interface loses carrier,
	// like a pulled cable.
	Carrier
)

func (m CutMode) String() string {
	if m == Carrier {
		return "carrier"
	}
	return "silent"
}

// Options shape a bed. The zero value is a bed with one phone, IPv4 only,
// and random subnets.
type Options struct {
	// Prefix is the name prefix of the bed's namespaces; default "tp" and
	// six random hex digits. Keep it short: namespace names are
	// Prefix+"-"+node.
	Prefix string
	// Phones is the number of phone namespaces (default 1).
	Phones int
	// LAN is the office subnet, at most a /24 (the bed uses hosts .1, .10,
	// .11, .12 and .101 on); default a random /24 within 10.64.0.0/10.
	LAN netip.Prefix
	// Crossover is the crossover subnet, at most a /30; default a random
	// /30 within 10.64.0.0/10.
	Crossover netip.Prefix
	// IPv6 also gives the LAN a random ULA /64 (hosts ::1, ::10, ::11, ::12,
	// ::101 on, without duplicate address detection). Without it IPv6 is
	// disabled in every namespace, which keeps the LAN silent.
	IPv6 bool
	// Logger receives what the bed does; default slog.Default().
	Logger *slog.Logger

	lan6 netip.Prefix
}

// Bed is a built test network. Its methods are safe for concurrent use.
type Bed struct {
	// Prefix is the namespace name prefix of this bed.
	Prefix string
	// LAN and Crossover are the IPv4 subnets; LAN6 is the IPv6 LAN subnet
	// when Options.IPv6 was set.
	LAN, Crossover, LAN6 netip.Prefix
	// Phones is the number of phones.
	Phones int

	log *slog.Logger

	mu     sync.Mutex
	nss    []string // namespaces created, in order
	procs  map[*Process]Node
	cuts   map[cutKey][]cutRule
	closed bool
}

type cutKey struct {
	node Node
	path Path
}

// cutRule is one applied change that Heal undoes.
type cutRule struct {
	ns    string
	table string // nft netdev table, or "" for a link set down
	link  string
}

// New builds a bed for a test and removes it in t.Cleanup. It skips the
// test, loudly, when the machine cannot build one (not root, no ip or nft
// command) and fails it when building fails.
func New(t testing.TB, opts Options) *Bed {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		t.Skipf("SKIPPING network namespace test: %s", reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Build(ctx, opts)
	if b != nil {
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("removing the test bed: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("building the test bed: %v", err)
	}
	return b
}

// Unavailable says why no bed can be built here, or "" when one can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the %q command is missing", tool)
		}
	}
	return ""
}

// Build builds a bed. It first removes what is left of beds whose process
// died without removing them. On error the partly built bed is returned
// too (when not nil), so the caller can Close it; Close is always safe.
func Build(ctx context.Context, opts Options) (*Bed, error) {
	if reason := Unavailable(); reason != "" {
		return nil, errors.New(reason)
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	removeLeftovers(ctx, opts.Logger)
	b := &Bed{
		Prefix:    opts.Prefix,
		LAN:       opts.LAN,
		Crossover: opts.Crossover,
		LAN6:      opts.lan6,
		Phones:    opts.Phones,
		log:       opts.Logger.With("bed", opts.Prefix),
		procs:     map[*Process]Node{},
		cuts:      map[cutKey][]cutRule{},
	}
	if err := writePIDFile(b.Prefix); err != nil {
		return nil, err
	}
	if err := b.build(ctx, opts.IPv6); err != nil {
		return b, err
	}
	b.log.Debug("test bed built", "lan", b.LAN, "crossover", b.Crossover)
	return b, nil
}

func (o *Options) fill() error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Prefix == "" {
		var r [3]byte
		if _, err := cryptoRead(r[:]); err != nil {
			return fmt.Errorf("choosing a bed name: %w", err)
		}
		o.Prefix = "tp" + hex.EncodeToString(r[:])
	}
	if strings.ContainsAny(o.Prefix, "/-. \t\n") || len(o.Prefix) > 10 {
		return fmt.Errorf("bed prefix %q: want at most 10 characters, no '-', '/', '.' or spaces", o.Prefix)
	}
	if o.Phones == 0 {
		o.Phones = 1
	}
	if o.Phones < 0 || o.Phones > 100 {
		return fmt.Errorf("%d phones: want 1 to 100", o.Phones)
	}
	if !o.LAN.IsValid() {
		o.LAN = randomSubnet(24)
	}
	if !o.Crossover.IsValid() {
		for {
			o.Crossover = randomSubnet(30)
			if !o.Crossover.Overlaps(o.LAN) {
				break
			}
		}
	}
	o.LAN, o.Crossover = o.LAN.Masked(), o.Crossover.Masked()
	if !o.LAN.Addr().Is4() || o.LAN.Bits() > 24 {
		return fmt.Errorf("LAN subnet %s: want an IPv4 subnet of at least /24", o.LAN)
	}
	if !o.Crossover.Addr().Is4() || o.Crossover.Bits() > 30 {
		return fmt.Errorf("crossover subnet %s: want an IPv4 subnet of at least /30", o.Crossover)
	}
	if o.LAN.Overlaps(o.Crossover) {
		return fmt.Errorf("LAN subnet %s overlaps the crossover %s", o.LAN, o.Crossover)
	}
	if o.IPv6 {
		var r [7]byte
		if _, err := cryptoRead(r[:]); err != nil {
			return fmt.Errorf("choosing an IPv6 subnet: %w", err)
		}
		var a [16]byte
		a[0] = 0xfd
		copy(a[1:8], r[:])
		o.lan6 = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	return nil
}

var cryptoRead = rand.Read

// randomSubnet picks a subnet of the given length within 10.64.0.0/10.
func randomSubnet(bits int) netip.Prefix {
	var r [4]byte
	_, _ = cryptoRead(r[:]) // never fails on Linux
	v := uint32(10)<<24 | 64<<16 | (uint32(r[1])<<16|uint32(r[2])<<8|uint32(r[3]))&(1<<22-1)
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return netip.PrefixFrom(a, bits).Masked()
}

// hostAddr is the host numbered n in p.
func hostAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		s := int(b[i]) + carry
		b[i] = byte(s)
		carry = s >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// NS is the namespace name of a node, or of "sw" for the switch.
func (b *Bed) NS(n Node) string { return b.Prefix + "-" + string(n) }

// SwitchNS is the namespace of the switch.
func (b *Bed) SwitchNS() string { return b.Prefix + "-sw" }

// Members lists every node on the LAN: A, B, the gateway and the phones.
func (b *Bed) Members() []Node {
	m := []Node{A, B, Gateway}
	for i := range b.Phones {
		m = append(m, Phone(i))
	}
	return m
}

// hostNumber is a node's host number on the LAN.
func (b *Bed) hostNumber(n Node) (int, error) {
	switch n {
	case A:
		return 11, nil
	case B:
		return 12, nil
	case Gateway:
		return 1, nil
	}
	if i, err := strconv.Atoi(strings.TrimPrefix(string(n), "p")); err == nil && strings.HasPrefix(string(n), "p") && i >= 1 && i <= b.Phones {
		return 100 + i, nil
	}
	return 0, fmt.Errorf("no node %q in the bed", n)
}

// Addr is the node's LAN address.
func (b *Bed) Addr(n Node) netip.Addr {
	h, err := b.hostNumber(n)
	if err != nil {
		return netip.Addr{}
	}
	return hostAddr(b.LAN, h)
}

// Addr6 is the node's IPv6 LAN address (invalid without Options.IPv6).
func (b *Bed) Addr6(n Node) netip.Addr {
	h, err := b.hostNumber(n)
	if err != nil || !b.LAN6.IsValid() {
		return netip.Addr{}
	}
	return hostAddr(b.LAN6, hexHost(h))
}

// hexHost makes host 101 read "::101" in IPv6.
func hexHost(n int) int {
	v, _ := strconv.ParseInt(strconv.Itoa(n), 16, 64)
	return int(v)
}

// CrossoverAddr is a box's crossover address.
func (b *Bed) CrossoverAddr(n Node) netip.Addr {
	switch n {
	case A:
		return hostAddr(b.Crossover, 1)
	case B:
		return hostAddr(b.Crossover, 2)
	}
	return netip.Addr{}
}

// VIP is the virtual address with the LAN's prefix length (host .10).
func (b *Bed) VIP() netip.Prefix { return netip.PrefixFrom(hostAddr(b.LAN, 10), b.LAN.Bits()) }

// VIP6 is the IPv6 virtual address (::10/64), invalid without Options.IPv6.
func (b *Bed) VIP6() netip.Prefix {
	if !b.LAN6.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(hostAddr(b.LAN6, 0x10), 64)
}

// port is the name of a node's port on the switch.
func port(n Node) string { return "sw" + string(n) }

func (b *Bed) build(ctx context.Context, ipv6 bool) error {
	nss := append([]string{b.SwitchNS()}, nsNames(b, b.Members())...)
	for _, ns := range nss {
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return fmt.Errorf("adding namespace %s: %w", ns, err)
		}
		b.mu.Lock()
		b.nss = append(b.nss, ns)
		b.mu.Unlock()
		if err := ipIn(ctx, ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
		// New interfaces inherit the defaults; set them before any exist.
		if err := b.sysctl(ctx, ns, sysctls(ns == b.SwitchNS(), ipv6, "default")...); err != nil {
			return err
		}
	}
	sw := b.SwitchNS()
	if err := ipIn(ctx, sw, "link", "add", BridgeInterface, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := ipIn(ctx, sw, "link", "set", BridgeInterface, "up"); err != nil {
		return err
	}
	for _, n := range b.Members() {
		ns := b.NS(n)
		if err := ipIn(ctx, sw, "link", "add", port(n), "type", "veth", "peer", "name", LANInterface, "netns", ns); err != nil {
			return err
		}
		if err := ipIn(ctx, sw, "link", "set", port(n), "master", BridgeInterface, "up"); err != nil {
			return err
		}
		h, _ := b.hostNumber(n)
		if err := ipIn(ctx, ns, "addr", "add", netip.PrefixFrom(hostAddr(b.LAN, h), b.LAN.Bits()).String(), "dev", LANInterface); err != nil {
			return err
		}
		if ipv6 {
			if err := ipIn(ctx, ns, "addr", "add", netip.PrefixFrom(b.Addr6(n), 64).String(), "dev", LANInterface, "nodad"); err != nil {
				return err
			}
		}
		if err := ipIn(ctx, ns, "link", "set", LANInterface, "up"); err != nil {
			return err
		}
		if n != Gateway {
			if err := ipIn(ctx, ns, "route", "add", "default", "via", b.Addr(Gateway).String()); err != nil {
				return err
			}
		}
	}
	if err := ipIn(ctx, b.NS(A), "link", "add", CrossoverInterface, "type", "veth", "peer", "name", CrossoverInterface, "netns", b.NS(B)); err != nil {
		return err
	}
	for _, n := range []Node{A, B} {
		ns := b.NS(n)
		if err := ipIn(ctx, ns, "addr", "add", netip.PrefixFrom(b.CrossoverAddr(n), b.Crossover.Bits()).String(), "dev", CrossoverInterface); err != nil {
			return err
		}
		if err := ipIn(ctx, ns, "link", "set", CrossoverInterface, "up"); err != nil {
			return err
		}
	}
	for _, ns := range nss {
		if err := b.sysctl(ctx, ns, sysctls(ns == sw, ipv6, "all")...); err != nil {
			return err
		}
	}
	for _, n := range []Node{A, B} {
		if err := b.sysctl(ctx, b.NS(n), "net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1"); err != nil {
			return err
		}
	}
	return nil
}

func nsNames(b *Bed, nodes []Node) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, b.NS(n))
	}
	return s
}

// sysctls are the settings of every namespace, for "default" (new
// interfaces) or "all".
func sysctls(isSwitch, ipv6 bool, which string) []string {
	if isSwitch || !ipv6 {
		return []string{"net.ipv6.conf." + which + ".disable_ipv6=1"}
	}
	return []string{
		"net.ipv6.conf." + which + ".accept_dad=0",
		"net.ipv6.conf." + which + ".accept_ra=0",
		"net.ipv6.conf." + which + ".router_solicitations=0",
	}
}

func (b *Bed) sysctl(ctx context.Context, ns string, settings ...string) error {
	args := append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, settings...)
	if err := run(ctx, "ip", args...); err != nil {
		return fmt.Errorf("setting %s in %s: %w", strings.Join(settings, " "), ns, err)
	}
	return nil
}

// MAC is the hardware address of a node's interface for a path.
func (b *Bed) MAC(ctx context.Context, n Node, p Path) (net.HardwareAddr, error) {
	iface := LANInterface
	if p == Crossover {
		iface = CrossoverInterface
	}
	var mac net.HardwareAddr
	err := b.InNS(b.NS(n), func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the MAC of %s's %s: %w", n, iface, err)
	}
	return mac, nil
}

// Close stops every process of the bed and removes its namespaces. It is
// safe to call more than once and on a partly built bed.
func (b *Bed) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	procs := make([]*Process, 0, len(b.procs))
	for p := range b.procs {
		procs = append(procs, p)
	}
	nss := append([]string(nil), b.nss...)
	b.mu.Unlock()

	for _, p := range procs {
		p.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		killNamespace(ctx, nss[i])
		if err := run(ctx, "ip", "netns", "del", nss[i]); err != nil {
			errs = append(errs, fmt.Errorf("removing namespace %s: %w", nss[i], err))
		}
	}
	if err := os.Remove(pidFile(b.Prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("removing the bed's pid file: %w", err))
	}
	return errors.Join(errs...)
}

// killNamespace kills every process still running in a namespace.
func killNamespace(ctx context.Context, ns string) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = killPID(pid)
		}
	}
}

// run runs a command and wraps its error with its output.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ipIn(ctx context.Context, ns string, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", ns}, args...)...)
}
