package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	pbxpkg "github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/resolve/resolvetest"
	"github.com/twinpbx/twinpbx/pbx/trunk"
	"github.com/twinpbx/twinpbx/pbx/trunk/trunktest"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

// The trunk tests run the PBX in this process, so that its resolver can
// ask a dnsmasq on a random port; everything else is real: SIP sockets,
// sipp as the extensions and as the provider's servers, the store.

// inProcessPBX is a PBX run by the test.
type inProcessPBX struct {
	p    *pbxpkg.PBX
	st   *store.Store
	addr string
	log  *syncbuf.Buffer
}

// trunkConfig is the config of an in-process test PBX: alice and bob,
// SIP and RTP on free ports, and the trunks, routes and console settings
// of with.
func trunkConfig(t *testing.T, with config.Config) *config.Config {
	t.Helper()
	port, rtp := freePorts(t, 2), freePorts(t, rtpPorts)
	with.Node = config.Node{Name: "a"}
	with.SIP = config.SIP{Listen: []string{fmt.Sprintf("udp:127.0.0.1:%d", port)},
		RTPPorts: fmt.Sprintf("%d-%d", rtp, rtp+rtpPorts-1)}
	with.Extensions = []config.Extension{alice, bob}
	return &with
}

// noDNS is a resolver for trunks given by address: no DNS server answers it.
func noDNS(t *testing.T) *resolve.Resolver {
	t.Helper()
	res, err := resolve.New(resolve.Config{Servers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func startInProcessPBX(t *testing.T, cfg *config.Config, res *resolve.Resolver) *inProcessPBX {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ip := &inProcessPBX{st: st, log: &syncbuf.Buffer{}}
	logger := slog.New(slog.NewTextHandler(ip.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ip.p, err = pbxpkg.New(pbxpkg.Options{Config: cfg, Store: st, AuthKey: key, Logger: logger, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []pbxpkg.Listener, 1)
	done := make(chan error, 1)
	go func() { done <- ip.p.Run(ctx, func(ls []pbxpkg.Listener) { ready <- ls }) }()
	select {
	case ls := <-ready:
		ip.addr = ls[0].Addr
	case err := <-done:
		t.Fatalf("PBX stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("PBX not ready in 10 s")
	}
	t.Cleanup(func() {
		cancel()
		<-done
		_ = st.Close()
		if t.Failed() {
			t.Logf("PBX log:\n%s", lastLines(ip.log.String(), 300))
		}
	})
	return ip
}

// cdrs returns the CDRs written so far.
func (ip *inProcessPBX) cdrs(t *testing.T) []cdr.Record {
	t.Helper()
	recs, err := ip.st.CDRs(time.Time{}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// trunkStatus returns the status of one trunk.
func (ip *inProcessPBX) trunkStatus(name string) trunk.Status {
	for _, s := range ip.p.Status().Trunks {
		if s.Name == name {
			return s
		}
	}
	return trunk.Status{}
}

// provider is one of a provider's SIP servers: sipp with provider.xml,
// answering any number of calls and OPTIONS probes.
type provider struct {
	t       *testing.T
	port    int
	msgFile string
	cmd     *exec.Cmd
	done    chan struct{}
	out     *syncbuf.Buffer
}

func startProvider(t *testing.T, port int) *provider {
	t.Helper()
	dir := t.TempDir()
	pr := &provider{t: t, port: port, msgFile: filepath.Join(dir, "provider.msg"), done: make(chan struct{}), out: &syncbuf.Buffer{}}
	pr.cmd = exec.Command("sipp", "-sf", filepath.Join("testdata", "sipp", "provider.xml"),
		"-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", strconv.Itoa(port), "-mp", strconv.Itoa(freePorts(t, 4)),
		"-nostdin", "-trace_msg", "-message_file", pr.msgFile)
	pr.cmd.Stdout, pr.cmd.Stderr = pr.out, pr.out
	pr.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pr.cmd.Start(); err != nil {
		t.Fatalf("starting sipp as a provider: %v", err)
	}
	go func() {
		_ = pr.cmd.Wait()
		close(pr.done)
	}()
	t.Cleanup(func() {
		pr.stop()
		if t.Failed() {
			b, _ := os.ReadFile(pr.msgFile)
			t.Logf("provider :%d messages:\n%s", port, lastLines(string(b), 80))
		}
	})
	waitFor(t, 10*time.Second, "the provider's sipp to listen", func() bool { return bound(port, false) })
	return pr
}

// stop kills the server, as a provider's server that dies.
func (pr *provider) stop() {
	select {
	case <-pr.done:
		return
	default:
	}
	_ = pr.cmd.Process.Kill()
	<-pr.done
}

// invites counts the distinct calls (Call-IDs of INVITEs) the server got.
func (pr *provider) invites() int {
	b, err := os.ReadFile(pr.msgFile)
	if err != nil {
		return 0
	}
	ids := map[string]bool{}
	for _, block := range strings.Split(string(b), "\nINVITE sip:")[1:] {
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Call-ID:"); ok {
				ids[strings.TrimSpace(v)] = true
				break
			}
		}
	}
	return len(ids)
}

// counted waits up to 10 s for cond, a count in sipp's trace files; the
// assertion after it says what was wrong when it does not come. The
// counts normally arrive within milliseconds: the margin is for a loaded
// machine, and costs time only when the test fails.
func counted(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// dialOut makes alice (sipp) dial number through the PBX; the call is
// answered and hung up by alice.
func dialOut(t *testing.T, ip *inProcessPBX, number string, want int) {
	t.Helper()
	runSipp(t, sippOpts{
		scenario: "uac.xml", remote: ip.addr, service: number,
		user: alice.Number, pass: alice.Secret, keys: caller(alice),
	}, want)
}

// TestTrunkDNS places calls from a sipp extension out over a provider
// whose two servers (sipp) a real dnsmasq names by NAPTR and SRV: the
// lower priority takes the calls, weights share them, a server that stops
// answering is passed over and a server that comes back is used again
// once its OPTIONS probe is answered.
func TestTrunkDNS(t *testing.T) {
	needTools(t, "sipp", "dnsmasq")
	portA, portB := freePorts(t, 2), freePorts(t, 2)
	dnsAddr := resolvetest.StartDNSMasq(t, 60,
		`--naptr-record=prio.test,10,10,"s","SIP+D2U","",_sip._udp.prio.test`,
		fmt.Sprintf("--srv-host=_sip._udp.prio.test,a.prio.test,%d,10,0", portA),
		fmt.Sprintf("--srv-host=_sip._udp.prio.test,b.prio.test,%d,20,0", portB),
		fmt.Sprintf("--srv-host=_sip._udp.weight.test,a.prio.test,%d,10,80", portA),
		fmt.Sprintf("--srv-host=_sip._udp.weight.test,b.prio.test,%d,10,20", portB),
		"--host-record=a.prio.test,127.0.0.1",
		"--host-record=b.prio.test,127.0.0.1",
	)
	res, err := resolve.New(resolve.Config{Servers: []string{dnsAddr}, ProbeInterval: 200 * time.Millisecond,
		ProbeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, b := startProvider(t, portA), startProvider(t, portB)

	cfg := trunkConfig(t, config.Config{
		Trunks: []config.TrunkLine{
			{Name: "prio", Host: "prio.test", DIDs: []config.DID{{Number: "4930123101", Extension: bob.Number}}},
			{Name: "weight", Host: "weight.test"},
		},
		Routes: []config.Route{
			{Pattern: "0.", Strip: 1, Trunks: []string{"prio"}},
			{Pattern: "9.", Strip: 1, Trunks: []string{"weight"}},
		},
	})
	ip := startInProcessPBX(t, cfg, res)

	// Priority: every call goes to the priority-10 server.
	for range 3 {
		dialOut(t, ip, "0301234", 0)
	}
	// sipp writes its message trace with a delay: wait for the count.
	counted(t, func() bool { return a.invites()+b.invites() == 3 })
	if na, nb := a.invites(), b.invites(); na != 3 || nb != 0 {
		t.Fatalf("priority: calls at a/b %d/%d, want 3/0", na, nb)
	}
	for _, r := range ip.cdrs(t) {
		if r.Trunk != "prio" || r.Disp != cdr.Answered || r.Callee != "0301234" {
			t.Errorf("CDR %+v", r)
		}
	}

	// Weights 80/20 over 40 calls: a takes more than b, and b some (the
	// chance that b gets none is 0.8^40, below 1e-3; that it gets more
	// than a far below that).
	a0, b0 := a.invites(), b.invites()
	for range 40 {
		dialOut(t, ip, "9301234", 0)
	}
	counted(t, func() bool { return a.invites()-a0+b.invites()-b0 == 40 })
	na, nb := a.invites()-a0, b.invites()-b0
	t.Logf("weights 80/20: %d calls at a, %d at b", na, nb)
	if na+nb != 40 || na <= nb || nb == 0 {
		t.Errorf("weights: calls at a/b %d/%d, want 40 shared about 32/8", na, nb)
	}

	// Failover: a dies; the next call waits out its silence and goes to
	// b, and the one after goes to b at once (a is marked dead).
	a.stop()
	b0 = b.invites()
	dialOut(t, ip, "0301234", 0)
	dialOut(t, ip, "0301234", 0)
	counted(t, func() bool { return b.invites()-b0 == 2 })
	if got := b.invites() - b0; got != 2 {
		t.Errorf("failover: b got %d calls, want 2", got)
	}
	if st := ip.trunkStatus("prio"); len(st.Dead) != 1 || !strings.Contains(st.Dead[0], strconv.Itoa(portA)) {
		t.Errorf("status after failover: dead %v, want a", st.Dead)
	}

	// Recovery: a comes back, answers the OPTIONS probe, takes calls again.
	a = startProvider(t, portA)
	waitFor(t, 10*time.Second, "a to be probed alive", func() bool { return len(ip.trunkStatus("prio").Dead) == 0 })
	dialOut(t, ip, "0301234", 0)
	counted(t, func() bool { return a.invites() == 1 })
	if a.invites() != 1 {
		t.Errorf("recovery: a got %d calls, want 1", a.invites())
	}

	// Inbound: the provider's server (its address and port, as DNS names
	// it) calls the DID; bob rings.
	a.stop()
	bobPort := freePorts(t, 2)
	runSipp(t, sippOpts{scenario: "register.xml", remote: ip.addr, port: bobPort,
		service: bob.Number, user: bob.Number, pass: bob.Secret, keys: map[string]string{"expires": "300"}}, 0)
	uas := startSipp(t, sippOpts{scenario: "uas.xml", service: bob.Number, port: bobPort})
	uas.waitBound()
	runSipp(t, sippOpts{scenario: "uac.xml", remote: ip.addr, port: portA, service: "4930123101",
		keys: map[string]string{"caller": "4930555", "caller_name": "Outside"}}, 0)
	uas.wait(0)
	// The record is written as the call ends, which may be just after
	// sipp saw its BYE answered.
	var in *cdr.Record
	waitFor(t, 10*time.Second, "the inbound call's CDR", func() bool {
		for _, r := range ip.cdrs(t) {
			if r.Caller == "4930555" {
				in = &r
			}
		}
		return in != nil
	})
	if in.Trunk != "prio" || in.Callee != bob.Number || in.Disp != cdr.Answered {
		t.Errorf("inbound CDR %+v", in)
	}
}

// TestTrunkDigest registers at a provider that asks digest for REGISTER
// and INVITE, and places a call through it from a sipp extension.
func TestTrunkDigest(t *testing.T) {
	needTools(t, "sipp")
	prov := trunktest.Start(t, trunktest.Options{User: "4930123", Password: "provider-secret-1"})
	res := noDNS(t)
	cfg := trunkConfig(t, config.Config{
		Trunks: []config.TrunkLine{{Name: "provider", Host: prov.Addr, Domain: "provider.test",
			User: "4930123", Password: "provider-secret-1", Register: true}},
		Console: &config.Console{Emergency: []string{"112"}},
	})
	ip := startInProcessPBX(t, cfg, res)
	waitFor(t, 10*time.Second, "the registration at the provider", func() bool {
		return ip.trunkStatus("provider").State == trunk.StateRegistered
	})
	if r := prov.Registers(); len(r) == 0 || r[0].Contact().Address.User != "4930123" {
		t.Fatalf("registrations %v", r)
	}
	// The default routes of a config without routes: 0 for the outside
	// line, 112 as an emergency call.
	dialOut(t, ip, "0301234", 0)
	dialOut(t, ip, "112", 0)
	invs := prov.Invites()
	if len(invs) != 2 || invs[0].Recipient.User != "301234" || invs[1].Recipient.User != "112" {
		t.Fatalf("provider got %d INVITEs", len(invs))
	}
	if h := invs[1].GetHeader("Priority"); h == nil || h.Value() != "emergency" {
		t.Errorf("emergency call without Priority: emergency")
	}
	if prov.Challenges() < 3 {
		t.Errorf("%d challenges: the provider's digest was not exercised for REGISTER and INVITE", prov.Challenges())
	}
}

// TestTrunkChannelsAndTransfer: a trunk with one channel (sipp provider
// servers behind plain addresses). While Alice talks over it, Bob's call
// goes out over the next trunk of the route, and a route with only the
// full trunk answers 503 with Q.850 cause 34; once Alice hangs up the
// channel is free again. Then Alice blind-transfers Bob to an outside
// number: the REFER goes out over the trunk, Bob talks to the provider
// and hangs up, and the CDRs say so.
func TestTrunkChannelsAndTransfer(t *testing.T) {
	needTools(t, "sipp")
	portA, portB := freePorts(t, 2), freePorts(t, 2)
	a, b := startProvider(t, portA), startProvider(t, portB)
	res := noDNS(t)
	cfg := trunkConfig(t, config.Config{
		Trunks: []config.TrunkLine{
			{Name: "one", Host: fmt.Sprintf("127.0.0.1:%d", portA), Channels: 1},
			{Name: "two", Host: fmt.Sprintf("127.0.0.1:%d", portB)},
		},
		Routes: []config.Route{
			{Pattern: "0.", Strip: 1, Trunks: []string{"one", "two"}},
			{Pattern: "9.", Strip: 1, Trunks: []string{"one"}},
		},
	})
	ip := startInProcessPBX(t, cfg, res)

	// Alice's call holds the only channel of "one" for 4 s.
	long := startSipp(t, sippOpts{scenario: "uac.xml", remote: ip.addr, service: "0301234",
		user: alice.Number, pass: alice.Secret, keys: caller(alice), pause: 4 * time.Second})
	waitFor(t, 10*time.Second, "Alice's call on trunk one", func() bool { return ip.trunkStatus("one").InUse == 1 })
	if st := ip.trunkStatus("one"); st.Channels != 1 {
		t.Errorf("status of trunk one: %d channels, want 1", st.Channels)
	}
	// Bob's call finds "one" full and goes out over "two".
	runSipp(t, sippOpts{scenario: "uac.xml", remote: ip.addr, service: "0301235",
		user: bob.Number, pass: bob.Secret, keys: caller(bob)}, 0)
	counted(t, func() bool { return b.invites() == 1 })
	if na, nb := a.invites(), b.invites(); na != 1 || nb != 1 {
		t.Errorf("calls at one/two %d/%d, want 1/1", na, nb)
	}
	// A route over the full trunk alone: 503, cause 34 (checked by sipp).
	runSipp(t, sippOpts{scenario: "uac-no-channel.xml", remote: ip.addr, service: "9301236",
		user: bob.Number, pass: bob.Secret, keys: caller(bob)}, 0)
	long.wait(0)
	waitFor(t, 10*time.Second, "trunk one's channel free", func() bool { return ip.trunkStatus("one").InUse == 0 })
	byCallee := func(callee string) *cdr.Record {
		var out *cdr.Record
		waitFor(t, 10*time.Second, "the CDR of the call to "+callee, func() bool {
			for _, r := range ip.cdrs(t) {
				if r.Callee == callee {
					out = &r
				}
			}
			return out != nil
		})
		return out
	}
	if r := byCallee("0301235"); r.Trunk != "two" || r.Disp != cdr.Answered {
		t.Errorf("CDR of Bob's call past the full trunk %+v", r)
	}
	if r := byCallee("9301236"); r.Trunk != "one" || r.Disp != cdr.Failed || r.SIPCode != 503 {
		t.Errorf("CDR of the refused call %+v", r)
	}

	// Blind transfer to an outside number: Alice calls Bob and transfers
	// him to 0301237; Bob talks to the provider and hangs up.
	bobPort := freePorts(t, 2)
	runSipp(t, sippOpts{scenario: "register.xml", remote: ip.addr, port: bobPort,
		service: bob.Number, user: bob.Number, pass: bob.Secret, keys: map[string]string{"expires": "300"}}, 0)
	bobUA := startSipp(t, sippOpts{scenario: "uas-bye.xml", service: bob.Number, port: bobPort, pause: 3 * time.Second})
	bobUA.waitBound()
	keys := caller(alice)
	keys["target"] = "0301237"
	xfer := runSipp(t, sippOpts{scenario: "uac-blind-refer.xml", remote: ip.addr, service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: keys}, 0)
	bobUA.wait(0)
	counted(t, func() bool { return a.invites() == 2 })
	if na := a.invites(); na != 2 {
		t.Errorf("trunk one got %d calls, want 2 (the transfer's)", na)
	}
	var first, transferred *cdr.Record
	waitFor(t, 10*time.Second, "the transfer's CDRs", func() bool {
		first, transferred = nil, nil
		for _, r := range ip.cdrs(t) {
			switch {
			case r.CallID == sippCallID(xfer) && r.Callee == bob.Number:
				first = &r
			case r.CallID == sippCallID(xfer) && r.Callee == "0301237":
				transferred = &r
			}
		}
		return first != nil && transferred != nil
	})
	if first.Caller != alice.Number || first.HangupBy != "transfer" || first.Disp != cdr.Answered {
		t.Errorf("CDR of Alice's call %+v", first)
	}
	if transferred.Caller != bob.Number || transferred.Trunk != "one" || transferred.Disp != cdr.Answered || transferred.HangupBy != "caller" {
		t.Errorf("CDR of the transferred call %+v", transferred)
	}
	waitFor(t, 10*time.Second, "trunk one's channel free after the transfer", func() bool { return ip.trunkStatus("one").InUse == 0 })
}
