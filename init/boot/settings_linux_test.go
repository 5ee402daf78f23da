package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNet records what applyStatic does to the links it knows.
type fakeNet struct {
	addrs map[string][]string // link → addresses
	calls []string
	fail  string // a call that fails
}

func (f *fakeNet) call(s string) error {
	f.calls = append(f.calls, s)
	if f.fail != "" && strings.HasPrefix(s, f.fail) {
		return errors.New("operation not permitted")
	}
	return nil
}

func (f *fakeNet) LinkByName(name string) (netlink.Link, error) {
	if _, ok := f.addrs[name]; !ok {
		return nil, errors.New("Link not found")
	}
	d := &netlink.Dummy{}
	d.Name, d.Index = name, 7
	return d, nil
}
func (f *fakeNet) LinkSetUp(l netlink.Link) error { return f.call("up " + l.Attrs().Name) }
func (f *fakeNet) AddrList(l netlink.Link, _ int) ([]netlink.Addr, error) {
	var out []netlink.Addr
	for _, a := range f.addrs[l.Attrs().Name] {
		ip, n, _ := net.ParseCIDR(a)
		n.IP = ip
		out = append(out, netlink.Addr{IPNet: n})
	}
	return out, nil
}
func (f *fakeNet) AddrReplace(l netlink.Link, a *netlink.Addr) error {
	if err := f.call("replace " + a.IPNet.String()); err != nil {
		return err
	}
	if !slices.Contains(f.addrs[l.Attrs().Name], a.IPNet.String()) {
		f.addrs[l.Attrs().Name] = append(f.addrs[l.Attrs().Name], a.IPNet.String())
	}
	return nil
}
func (f *fakeNet) AddrDel(l netlink.Link, a *netlink.Addr) error {
	if err := f.call("del " + a.IPNet.String()); err != nil {
		return err
	}
	f.addrs[l.Attrs().Name] = slices.DeleteFunc(f.addrs[l.Attrs().Name], func(s string) bool { return s == a.IPNet.String() })
	return nil
}
func (f *fakeNet) RouteReplace(r *netlink.Route) error {
	return f.call(fmt.Sprintf("route via %s dev %d", r.Gw, r.LinkIndex))
}

func TestApplyStatic(t *testing.T) {
	plan := NetPlan{Set: true, Addr: netip.MustParsePrefix("192.168.1.21/24"), Gateway: netip.MustParseAddr("192.168.1.1")}
	tests := []struct {
		name      string
		have      []string
		plan      NetPlan
		fail      string
		wantAddrs []string
		wantCalls []string
		wantErr   string
	}{
		{name: "the command line's address is replaced", have: []string{"10.0.2.15/24"}, plan: plan,
			wantAddrs: []string{"192.168.1.21/24"},
			wantCalls: []string{"up eth0", "replace 192.168.1.21/24", "del 10.0.2.15/24", "route via 192.168.1.1 dev 7"}},
		{name: "same address stays", have: []string{"192.168.1.21/24"}, plan: plan,
			wantAddrs: []string{"192.168.1.21/24"},
			wantCalls: []string{"up eth0", "replace 192.168.1.21/24", "route via 192.168.1.1 dev 7"}},
		{name: "no gateway, no route", have: nil, plan: NetPlan{Set: true, Addr: plan.Addr},
			wantAddrs: []string{"192.168.1.21/24"}, wantCalls: []string{"up eth0", "replace 192.168.1.21/24"}},
		{name: "route refused", have: nil, plan: plan, fail: "route", wantAddrs: []string{"192.168.1.21/24"},
			wantCalls: []string{"up eth0", "replace 192.168.1.21/24", "route via 192.168.1.1 dev 7"}, wantErr: "default route via 192.168.1.1"},
		{name: "address refused: the old one stays", have: []string{"10.0.2.15/24"}, plan: plan, fail: "replace",
			wantAddrs: []string{"10.0.2.15/24"}, wantCalls: []string{"up eth0", "replace 192.168.1.21/24"}, wantErr: "adding 192.168.1.21/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeNet{addrs: map[string][]string{"eth0": slices.Clone(tt.have)}, fail: tt.fail}
			err := applyStatic(f, "eth0", tt.plan)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("applyStatic = %v, want error %q", err, tt.wantErr)
			}
			if !slices.Equal(f.addrs["eth0"], tt.wantAddrs) {
				t.Errorf("addresses %q, want %q", f.addrs["eth0"], tt.wantAddrs)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("calls %q, want %q", f.calls, tt.wantCalls)
			}
		})
	}
	if err := applyStatic(&fakeNet{addrs: map[string][]string{}}, "eth9", plan); err == nil || !strings.Contains(err.Error(), "eth9") {
		t.Errorf("missing NIC: %v", err)
	}
}

func TestApplierNetwork(t *testing.T) {
	dhcpPlan := Settings{NIC: "eth0", Net: NetPlan{Set: true, DHCP: true}}
	staticPlan := Settings{NIC: "eth0", Net: NetPlan{Set: true, Addr: netip.MustParsePrefix("10.0.0.2/24"), DNS: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
	tests := []struct {
		name       string
		s          Settings
		lease      time.Duration
		dhcpErr    error
		wantDHCP   bool
		wantResolv bool
		wantRenew  time.Duration
		wantErr    string
	}{
		{name: "no network setting changes nothing", s: Settings{NIC: "eth0"}},
		{name: "dhcp renewed at half the lease", s: dhcpPlan, lease: 4 * time.Hour, wantDHCP: true, wantRenew: 2 * time.Hour},
		{name: "short lease renewed after a minute", s: dhcpPlan, lease: 10 * time.Second, wantDHCP: true, wantRenew: time.Minute},
		{name: "dhcp without answer: asked again", s: dhcpPlan, dhcpErr: errors.New("no answer"), wantDHCP: true, wantRenew: time.Minute, wantErr: "DHCP on eth0: no answer"},
		{name: "static with DNS", s: staticPlan, wantResolv: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeNet{addrs: map[string][]string{"eth0": nil}}
			a := newApplier(slog.New(slog.DiscardHandler))
			a.net = f
			a.resolv = t.TempDir() + "/resolv.conf"
			dhcp := false
			a.dhcp = func(context.Context, string) (time.Duration, error) { dhcp = true; return tt.lease, tt.dhcpErr }
			renew, err := a.network(context.Background(), tt.s)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("network = %v, want error %q", err, tt.wantErr)
			}
			if dhcp != tt.wantDHCP {
				t.Errorf("DHCP asked: %v, want %v", dhcp, tt.wantDHCP)
			}
			if renew != tt.wantRenew {
				t.Errorf("renew after %v, want %v", renew, tt.wantRenew)
			}
			b, rerr := os.ReadFile(a.resolv)
			if tt.wantResolv != (rerr == nil) || tt.wantResolv && !strings.Contains(string(b), "nameserver 10.0.0.1") {
				t.Errorf("resolv.conf %q, %v; want written: %v", b, rerr, tt.wantResolv)
			}
		})
	}
}

func TestApplierClock(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		answers map[string]time.Duration // missing: no answer
		setErr  error
		wantSet []time.Duration
		wantErr string
	}{
		{name: "no servers, clock left alone"},
		{name: "first answers", servers: []string{"a", "b"}, answers: map[string]time.Duration{"a": 3 * time.Second, "b": time.Hour}, wantSet: []time.Duration{3 * time.Second}},
		{name: "second answers", servers: []string{"a", "b"}, answers: map[string]time.Duration{"b": -time.Minute}, wantSet: []time.Duration{-time.Minute}},
		{name: "none answers", servers: []string{"a", "b"}, wantErr: "no time server answered"},
		{name: "clock refused", servers: []string{"a"}, answers: map[string]time.Duration{"a": time.Second}, setErr: unix.EPERM, wantSet: []time.Duration{time.Second}, wantErr: "setting the clock from a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApplier(slog.New(slog.DiscardHandler))
			var set []time.Duration
			a.query = func(s string) (time.Duration, error) {
				if d, ok := tt.answers[s]; ok {
					return d, nil
				}
				return 0, errors.New("i/o timeout")
			}
			a.setClock = func(d time.Duration) error { set = append(set, d); return tt.setErr }
			err := a.clock(Settings{NTP: tt.servers})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("clock = %v, want error %q", err, tt.wantErr)
			}
			if !slices.Equal(set, tt.wantSet) {
				t.Errorf("clock moved by %v, want %v", set, tt.wantSet)
			}
		})
	}
}

func TestKeepLease(t *testing.T) {
	a := newApplier(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	a.dhcp = func(context.Context, string) (time.Duration, error) {
		calls++
		cancel() // the box stops: the next renewal never comes
		return time.Hour, nil
	}
	done := make(chan struct{})
	go func() {
		a.keepLease(ctx, Settings{NIC: "eth0", Net: NetPlan{Set: true, DHCP: true}}, time.Millisecond)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("keepLease did not end with its context")
	}
	if calls != 1 {
		t.Errorf("DHCP asked %d times, want 1", calls)
	}
	// A static setting has nothing to renew: it returns at once.
	a.keepLease(context.Background(), Settings{}, 0)
}
