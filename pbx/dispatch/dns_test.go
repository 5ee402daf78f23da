package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/resolve/resolvetest"
)

func newResolver(t *testing.T, server string) *resolve.Resolver {
	t.Helper()
	r, err := resolve.New(resolve.Config{Servers: []string{server}, Transports: []string{resolve.UDP}, Timeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// statusByName is the Status of each backend found by DNS, by its name.
func statusByName(d *Dispatcher) map[string]BackendStatus {
	out := map[string]BackendStatus{}
	for _, b := range d.Status().Backends {
		out[b.Name] = b
	}
	return out
}

// TestBackendsByName: an SRV name brings each of its targets as a
// backend, with the records' weights; a host:port name one backend with
// its configured weight; calls reach them and are Record-Routed with the
// name's tag.
func TestBackendsByName(t *testing.T) {
	bs := threeBackends(t)
	backup := newFakeBackend(t)
	dns := resolvetest.StartDNSMasq(t, 1,
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,a.pbxes.test,%d,10,10", bs[0].addr.Port()),
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,b.pbxes.test,%d,10,30", bs[1].addr.Port()),
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,backup.pbxes.test,%d,20,10", backup.addr.Port()),
		"--host-record=a.pbxes.test,127.0.0.1",
		"--host-record=b.pbxes.test,127.0.0.1",
		"--host-record=c.pbxes.test,127.0.0.1",
		"--host-record=backup.pbxes.test,127.0.0.1",
	)
	cName := fmt.Sprintf("c.pbxes.test:%d", bs[2].addr.Port())
	disp, d := startDispatcher(t, Config{
		Algorithm: RoundRobin, ProbeInterval: time.Hour, ResolveEvery: 50 * time.Millisecond,
		Backends: []Backend{{Name: "_sip._udp.pbxes.test"}, {Name: "sip:" + cName, Weight: 2}},
		Resolver: newResolver(t, dns),
	})
	want := map[string]BackendStatus{
		fmt.Sprintf("a.pbxes.test:%d", bs[0].addr.Port()): {Addr: bs[0].addr.String(), Weight: 10},
		fmt.Sprintf("b.pbxes.test:%d", bs[1].addr.Port()): {Addr: bs[1].addr.String(), Weight: 30},
		cName: {Addr: bs[2].addr.String(), Weight: 2},
	}
	backupName := fmt.Sprintf("backup.pbxes.test:%d", backup.addr.Port())
	waitFor(t, "four backends from DNS", func() bool { return len(statusByName(disp)) == 4 })
	for name, w := range want {
		got := statusByName(disp)[name]
		if got.Addr != w.Addr || got.Weight != w.Weight || !got.Up {
			t.Errorf("backend %s: %+v, want address %s weight %d, up", name, got, w.Addr, w.Weight)
		}
	}
	if got := statusByName(disp)[backupName]; got.Priority != 20 {
		t.Errorf("backup: %+v, want priority 20", got)
	}
	p := newPhone(t)
	tags := map[string]string{}
	for name := range want {
		tags[backendTag(name)] = name
	}
	for k := range 6 {
		id := fmt.Sprintf("dns-%d", k)
		c := &call{id: id}
		p.send(d, p.request(d, c, sip.INVITE, id))
		res := p.final(id, sip.INVITE)
		if res.StatusCode != 200 {
			t.Fatalf("call %s: %d", id, res.StatusCode)
		}
		who := owner(t, bs, id)
		rr := res.RecordRoute()
		if rr == nil {
			t.Fatalf("call %s: no Record-Route", id)
		}
		if name := tags[rr.Address.UriParams.GetOr(routeParam, "")]; name == "" || statusByName(disp)[name].Addr != bs[who].addr.String() {
			t.Errorf("call %s at %s Record-Routed as %q", id, bs[who].addr, name)
		}
	}
	// The SRV target of priority 20 is the backup of the two of 10, not
	// a peer of the host:port name (priority 0 as any address): it
	// got nothing.
	if got := backup.requests(time.Time{}); len(got) != 0 {
		t.Errorf("the backup target got %v", got)
	}
}

// TestNameChanges: a backend whose name points to another address keeps
// its index, health and counts, and only answers to probes from the new
// address count; a failed lookup keeps the last addresses; a target that
// leaves the SRV set gets no new calls.
func TestNameChanges(t *testing.T) {
	port := 5999
	dns1 := resolvetest.StartDNSMasq(t, 1,
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,a.pbxes.test,%d,10,10", port),
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,b.pbxes.test,%d,10,10", port),
		"--host-record=a.pbxes.test,127.0.0.1",
		"--host-record=b.pbxes.test,127.0.0.3",
	)
	dns2 := resolvetest.StartDNSMasq(t, 1,
		fmt.Sprintf("--srv-host=_sip._udp.pbxes.test,a.pbxes.test,%d,10,10", port),
		"--host-record=a.pbxes.test,127.0.0.2",
	)
	d, err := New(Config{
		Algorithm: HashCallID, Backends: []Backend{{Name: "_sip._udp.pbxes.test"}},
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Logger: slog.New(slog.DiscardHandler),
		Resolver: newResolver(t, dns1),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d.resolveAll(ctx)
	r := d.roster.Load()
	a := r.byName[fmt.Sprintf("a.pbxes.test:%d", port)]
	if len(r.names) != 2 || r.addrs[a] != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)) {
		t.Fatalf("after the first lookup: %v %v", r.names, r.addrs)
	}
	d.sent[a].Store(7)
	d.health.timedOut(a, "INVITE")

	// The lookup fails: everything stays.
	d.cfg.Resolver = newResolver(t, "127.0.0.1:1")
	d.resolveAll(ctx)
	if d.roster.Load() != r {
		t.Fatalf("a failed lookup changed the backends")
	}
	if al := d.Status().Alarms; len(al) != 1 || !strings.Contains(al[0], "_sip._udp.pbxes.test does not resolve") {
		t.Errorf("alarms %q, want one for the name", al)
	}

	// a moves to 127.0.0.2, b leaves.
	d.cfg.Resolver = newResolver(t, dns2)
	d.resolveAll(ctx)
	r2 := d.roster.Load()
	if al := d.Status().Alarms; len(al) != 0 {
		t.Errorf("alarms %q after the name resolved again", al)
	}
	if r2.byName[fmt.Sprintf("a.pbxes.test:%d", port)] != a || r2.addrs[a].Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("after the move: %v %v", r2.names, r2.addrs)
	}
	if d.sent[a].Load() != 7 || d.health.isUp(a) {
		t.Errorf("the moved backend lost its state: sent %d, up %v", d.sent[a].Load(), d.health.isUp(a))
	}
	if i := r2.byName[fmt.Sprintf("b.pbxes.test:%d", port)]; r2.listed[i] || d.usable(i) {
		t.Errorf("a target no longer listed still takes calls")
	}
	if got := d.sel.pick("x", d.usable); got != -1 {
		t.Errorf("picked backend %d with a down and an unlisted one", got)
	}
	if st := d.Status().Backends; len(st) != 1 || st[0].Addr != r2.addrs[a].String() {
		t.Errorf("status %+v", st)
	}

	// Only answers from the new address bring it up.
	probe := func(from string) {
		p := d.probes
		p.mu.Lock()
		p.seq[a]++
		p.outstanding[a] = true
		seq := p.seq[a]
		p.mu.Unlock()
		d.probeAnswered(fmt.Sprintf("%s%d-%d", probePrefix, a, seq), 200, netip.MustParseAddrPort(from))
	}
	for range DefaultUpAfter + 1 {
		probe(fmt.Sprintf("127.0.0.1:%d", port))
	}
	if d.health.isUp(a) {
		t.Errorf("answers from the old address brought the backend up")
	}
	for range DefaultUpAfter {
		probe(fmt.Sprintf("127.0.0.2:%d", port))
	}
	if !d.health.isUp(a) {
		t.Errorf("answers from the new address did not bring the backend up")
	}
}

// TestNameMovesWhileRunning: a running dispatcher sees a host name's new
// address once the old record's TTL has run out (dnsmasq reads its hosts
// directory again on its own), sends the next calls there, and the
// backend keeps its count of calls.
func TestNameMovesWhileRunning(t *testing.T) {
	first := newFakeBackend(t)
	second := newFakeBackendAt(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), first.addr.Port()))
	hosts := t.TempDir()
	write := func(ip string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(hosts, "pbx"), []byte(ip+" pbx.moving.test\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("127.0.0.1")
	dns := resolvetest.StartDNSMasq(t, 1, "--hostsdir="+hosts)
	disp, d := startDispatcher(t, Config{
		Algorithm: HashCallID, ProbeInterval: time.Hour, ResolveEvery: 100 * time.Millisecond,
		Backends: []Backend{{Name: fmt.Sprintf("pbx.moving.test:%d", first.addr.Port())}},
		Resolver: newResolver(t, dns),
	})
	at := func(want netip.AddrPort) func() bool {
		return func() bool {
			st := disp.Status().Backends
			return len(st) == 1 && st[0].Addr == want.String()
		}
	}
	waitFor(t, "the name resolved", at(first.addr))
	p := newPhone(t)
	p.establish(d, "before-move")
	if first.last(sip.INVITE, "before-move") == nil {
		t.Fatal("the call did not reach the name's first address")
	}
	write("127.0.0.2")
	waitFor(t, "the new address taken", at(second.addr))
	p.establish(d, "after-move")
	if second.last(sip.INVITE, "after-move") == nil {
		t.Fatal("the call after the move did not reach the new address")
	}
	if st := disp.Status().Backends[0]; st.Sent != 2 || !st.Up {
		t.Errorf("after the move: %+v, want 2 calls counted and up", st)
	}
}

// TestNameSeveralAddresses: a host name with two A records is two
// backends, named by the name and by the name with the second address
// (sorted, so a restart names them alike), each probed and marked down on
// its own, calls hashed over both and Record-Routed with the one that took
// them; when one address leaves the name and another comes, the backend of
// the address that left takes the new one.
func TestNameSeveralAddresses(t *testing.T) {
	first := newFakeBackend(t)
	port := first.addr.Port()
	second := newFakeBackendAt(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port))
	third := newFakeBackendAt(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port))
	hosts := t.TempDir()
	write := func(ips ...string) {
		t.Helper()
		var b strings.Builder
		for _, ip := range ips {
			b.WriteString(ip + " pbx.multi.test\n")
		}
		if err := os.WriteFile(filepath.Join(hosts, "pbx"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("127.0.0.2", "127.0.0.1")
	dns := resolvetest.StartDNSMasq(t, 1, "--hostsdir="+hosts)
	name := fmt.Sprintf("pbx.multi.test:%d", port)
	disp, d := startDispatcher(t, Config{
		// Two probes missed in a row, 250 ms apart, mark down: a loaded
		// machine does not take the live address down.
		Algorithm: HashCallID, ProbeInterval: 250 * time.Millisecond, DownAfter: 2, UpAfter: 1, ResolveEvery: 100 * time.Millisecond,
		Backends: []Backend{{Name: name}},
		Resolver: newResolver(t, dns),
	})
	names := map[string]netip.AddrPort{name: first.addr, name + "/127.0.0.2": second.addr}
	waitFor(t, "both addresses as backends", func() bool {
		st := statusByName(disp)
		if len(st) != 2 {
			return false
		}
		for n, a := range names {
			if st[n].Addr != a.String() || !st[n].Up {
				return false
			}
		}
		return true
	})
	bs := []*fakeBackend{first, second}
	p := newPhone(t)
	call := func(id string) int {
		t.Helper()
		c := &call{id: id}
		p.send(d, p.request(d, c, sip.INVITE, id))
		res := p.final(id, sip.INVITE)
		if res.StatusCode != 200 {
			t.Fatalf("call %s: %d", id, res.StatusCode)
		}
		who := owner(t, bs, id)
		tag := res.RecordRoute().Address.UriParams.GetOr(routeParam, "")
		for n, a := range names {
			if backendTag(n) == tag && a != bs[who].addr {
				t.Errorf("call %s at %s Record-Routed as %s", id, bs[who].addr, n)
			}
		}
		return who
	}
	got := make([]int, 2)
	for k := range 20 {
		got[call(fmt.Sprintf("multi-%d", k))]++
	}
	if got[0] == 0 || got[1] == 0 {
		t.Fatalf("20 calls spread %v over the two addresses", got)
	}

	// The second address dies: only its backend goes down, and the
	// calls all go to the first.
	second.silent.Store(true)
	waitFor(t, "the second address marked down", func() bool {
		st := statusByName(disp)
		return !st[name+"/127.0.0.2"].Up && st[name].Up
	})
	for k := range 10 {
		if who := call(fmt.Sprintf("multi-down-%d", k)); who != 0 {
			t.Fatalf("a call reached the dead address")
		}
	}

	// The name's second address becomes 127.0.0.3: that backend takes it
	// (keeping its name), answers its probes there and takes calls again.
	write("127.0.0.1", "127.0.0.3")
	names[name+"/127.0.0.2"] = third.addr
	bs = append(bs, third)
	waitFor(t, "the new address taken and up", func() bool {
		st := statusByName(disp)
		b := st[name+"/127.0.0.2"]
		return len(st) == 2 && b.Addr == third.addr.String() && b.Up
	})
	got = make([]int, 3)
	for k := range 20 {
		got[call(fmt.Sprintf("multi-after-%d", k))]++
	}
	if got[0] == 0 || got[2] == 0 || got[1] != 0 {
		t.Fatalf("20 calls after the change spread %v, want some at the first and the new address, none at the old", got)
	}
}
