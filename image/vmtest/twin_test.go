package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	pstn "github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/internal/waitfor"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// The twin test's extensions and pairing key.
var (
	twinAlice = config.Extension{Number: "100", Name: "Alice", Secret: "alice-secret-1"}
	twinBob   = config.Extension{Number: "101", Name: "Bob", Secret: "bob-secret-22"}
)

const twinPairingKey = "vm-twin-pairing-key-0123456789"

// Console lines of the twin test: the standby's replication receiver
// once it has the active's store.
const markerInSync = "in sync with the active"

// sippScenarios are the e2e package's sipp scenarios.
var sippScenarios = filepath.Join("..", "..", "e2e", "testdata", "sipp")

// twinPhonePort is the SIP port of the sipp phones.
const twinPhonePort = 5062

// requireTwinNet skips the test, loudly, when this machine cannot build
// the pair's network (root for the namespace and the taps, ip) and fails
// it when a tool the test needs is missing.
func requireTwinNet(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vmtest: SKIPPING the twin VM test: a network namespace with taps needs root")
		t.Skip("the twin VM test needs root (network namespace, taps)")
	}
	for _, tool := range []string{"ip", "sipp", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("missing %s: run scripts/install-deps.sh test vm", tool)
		}
	}
}

// TestTwin boots a twin pair as two VMs: a crossover cable between them
// (QEMU dgram link), a LAN (a bridge in a network namespace, with the
// gateway and two sipp phones), and their serial ports on a TwinLine (one
// simulated Numato relay board, the PSTN line through it). A phone
// registers to the VIP; the relay must select the active, and a call
// from the line must reach the phone through it. The active VM's QEMU is
// killed: the relay must move to the other VM, and the other phone's
// next call goes through it, the phone not registering again.
func TestTwin(t *testing.T) {
	requireVM(t)
	requireTwinNet(t)
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	initrd, err := Uncompressed(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := NewTwinNet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tn.Close(); err != nil {
			t.Errorf("removing the twin network: %v", err)
		}
	})
	dir := t.TempDir()
	var lineLog syncbuf.Buffer
	line, err := NewTwinLine(dir, slog.New(slog.NewTextHandler(&lineLog, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := line.Close(); err != nil {
			t.Errorf("closing the twin line: %v", err)
		}
		if t.Failed() {
			t.Logf("relay board and PSTN line:\n%s", lineLog.String())
		}
	})
	vms := map[string]*Machine{}
	for _, node := range TwinNodes {
		cfg, err := TwinBoxConfig(node, twinPairingKey, twinAlice, twinBob)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Trunks = append(cfg.Trunks, TwinISDNTrunk(twinBob.Number))
		disk, err := TwinDisk(ctx, dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := TwinMachine(img, initrd, node, disk)
		c.Extra = append(c.Extra, line.Serial(node)...)
		c.Nice = true
		vms[node] = startTwinVM(t, tn, node, c)
	}
	started := time.Now()

	// One box answers on the VIP; the other follows it.
	phone, vip, active, standby := settledPair(ctx, t, tn)
	t.Logf("%s answers on the VIP %v after the machines started", active, time.Since(started).Round(10*time.Millisecond))
	synced, err := vms[standby].WaitConsole(ctx, markerInSync)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s in sync with %s %v after its QEMU started", standby, active, synced.Round(10*time.Millisecond))

	// Bob registers on phone 2; replication acks before the 200, so the
	// standby knows him once sipp ends.
	runSipp(t, tn.sipp(ctx, 1, "register.xml", twinBob, twinBob.Number, "-key", "expires", "600"), "registering bob")

	// The relay gives the PSTN line to the active, and a call from the
	// line rings Bob through it.
	waitfor.Cond(t, 30*time.Second, "the relay to select "+active, func() bool { return line.Side() == NodeSide(active) })
	if side, ok := line.Selected(active); !ok || side != NodeSide(active) {
		t.Fatalf("the active %s did not switch the relay to its side %v itself (its last command: %v, %v)", active, NodeSide(active), side, ok)
	}
	lineCall(ctx, t, tn, line, active)

	// The active's machine dies.
	killed := time.Now()
	vms[active].Kill()
	if got := answering(ctx, t, tn, phone, vip); got != standby {
		t.Fatalf("after %s died, %q answers on the VIP, want %s", active, got, standby)
	}
	t.Logf("%s answers on the VIP %v after %s's QEMU was killed", standby, time.Since(killed).Round(10*time.Millisecond), active)
	waitfor.Cond(t, 30*time.Second, "the relay to select "+standby, func() bool { return line.Side() == NodeSide(standby) })
	if side, ok := line.Selected(standby); !ok || side != NodeSide(standby) {
		t.Fatalf("%s did not switch the relay to its side %v itself (its last command: %v, %v)", standby, NodeSide(standby), side, ok)
	}
	t.Logf("the relay selects %s %v after %s's QEMU was killed", standby, time.Since(killed).Round(10*time.Millisecond), active)

	// Alice calls Bob, who did not register again.
	uas := tn.sipp(ctx, 1, "uas.xml", config.Extension{}, twinBob.Number)
	if err := uas.Start(); err != nil {
		t.Fatalf("starting bob's sipp: %v", err)
	}
	uac := tn.sipp(ctx, 0, "uac.xml", twinAlice, twinBob.Number,
		"-key", "caller", twinAlice.Number, "-key", "caller_name", twinAlice.Name,
		"-auth_uri", twinBob.Number+"@"+vip, "-d", "200")
	runSipp(t, uac, "alice calls bob through "+standby)
	if err := uas.Wait(); err != nil {
		t.Fatalf("bob's phone: sipp failed: %v\n%s", err, testbed.SippReport(uas.Stdout.(*bytes.Buffer).String()))
	}
	// And a call from the line reaches Bob through the survivor, whose
	// ISDN gateway asks for its TEI once layer 1 comes up on its side.
	lineCall(ctx, t, tn, line, standby)
	t.Logf("alice called bob through %s; whole test %v", standby, time.Since(started).Round(100*time.Millisecond))
}

// startTwinVM starts one machine of the twin pair; its console is logged
// when the test fails, and it is killed at the end.
func startTwinVM(t *testing.T, tn *TwinNet, node string, c Config) *Machine {
	t.Helper()
	m, err := tn.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("console of %s:\n%s", node, m.Console())
		}
	})
	return m
}

// settledPair waits until a box answers on the VIP from the first phone's
// address and returns that phone, the VIP's SIP address, and the active
// and standby node names.
func settledPair(ctx context.Context, t *testing.T, tn *TwinNet) (phone netip.Addr, vip, active, standby string) {
	t.Helper()
	phone = TwinPhones[0]
	vip = netip.AddrPortFrom(TwinVIP.Addr(), 5060).String()
	active = answering(ctx, t, tn, phone, vip)
	standby = "a"
	if active == "a" {
		standby = "b"
	}
	return phone, vip, active, standby
}

// lineCall places a call from the PSTN line, which the relay gives to
// node, to the pair; Bob's phone (sipp) must answer it, and the line
// hangs up. When the pair moves while the call is set up (two TCG
// machines on a loaded host stall for seconds, and a box that misses its
// gateway probe hands over), the call is lost, as ringing calls are in a
// handover: it is placed again, up to three times in all, through the
// box the relay selects then.
func lineCall(ctx context.Context, t *testing.T, tn *TwinNet, line *TwinLine, node string) {
	t.Helper()
	side := NodeSide(node)
	for attempt := 1; ; attempt++ {
		switches := line.Switches()
		err := tryLineCall(ctx, t, tn, line, side)
		if err == nil {
			return
		}
		if line.Switches() == switches || attempt == 3 {
			t.Fatal(err)
		}
		side = line.Side()
		t.Logf("the relay moved during the call from the line (%v); placing it again through side %v", err, side)
	}
}

func tryLineCall(ctx context.Context, t *testing.T, tn *TwinNet, line *TwinLine, side relay.Side) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	uas := tn.sipp(ctx, 1, "uas.xml", config.Extension{}, twinBob.Number)
	if err := uas.Start(); err != nil {
		return fmt.Errorf("starting bob's sipp: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- uas.Wait() }()
	ended := false
	defer func() {
		if !ended {
			_ = uas.Process.Kill()
			<-done
		}
	}()
	bob := func() string { return testbed.SippReport(uas.Stdout.(*bytes.Buffer).String()) }
	x, err := line.Exchange(ctx, side)
	if err != nil {
		return err
	}
	if err := x.WaitReady(ctx); err != nil {
		return fmt.Errorf("the ISDN data link on side %v: %w", side, err)
	}
	ready := time.Since(start)
	call, err := x.Dial(ctx, pstn.DialParams{Calling: "030123456", Called: "4930555"})
	if err != nil {
		return fmt.Errorf("calling side %v from the line: %w", side, err)
	}
	if err := call.Wait(ctx, pstn.Connected); err != nil {
		return fmt.Errorf("the call from the line through side %v: %w (status %v, cause %d)\n%s", side, err, call.Status(), call.Cause(), bob())
	}
	if err := call.Hangup(ctx, 16); err != nil {
		return fmt.Errorf("hanging up the call from the line: %w", err)
	}
	select {
	case err := <-done:
		ended = true
		if err != nil {
			return fmt.Errorf("bob's phone, called from the line: sipp failed: %w\n%s", err, bob())
		}
	case <-ctx.Done():
		return fmt.Errorf("bob's phone, called from the line, did not end: %w\n%s", ctx.Err(), bob())
	}
	t.Logf("a call from the line reached bob through side %v (data link up after %v, answered and hung up %v after it)",
		side, ready.Round(10*time.Millisecond), (time.Since(start) - ready).Round(10*time.Millisecond))
	return nil
}

// answering polls the VIP with SIP OPTIONS from the phone address until
// a box answers, and returns its node name (Server: twinpbx/NODE).
func answering(ctx context.Context, t *testing.T, tn *TwinNet, phone netip.Addr, vip string) string {
	t.Helper()
	var server string
	err := tn.Do(func() error {
		var err error
		server, err = OptionsFrom(ctx, net.IP(phone.AsSlice()), vip)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	node, ok := strings.CutPrefix(server, "twinpbx/")
	if !ok {
		t.Fatalf("the VIP is answered by %q, want twinpbx/…", server)
	}
	node, _, _ = strings.Cut(node, " ")
	return node
}

// sipp is one sipp call (-m 1) from phone i (TwinPhones) to the VIP,
// not yet started; its output is collected in Stdout.
func (n *TwinNet) sipp(ctx context.Context, i int, scenario string, ext config.Extension, service string, extra ...string) *exec.Cmd {
	addr := TwinPhones[i].String()
	args := []string{"sipp", "-sf", filepath.Join(sippScenarios, scenario),
		"-i", addr, "-mi", addr, "-p", strconv.Itoa(twinPhonePort), "-mp", "6000",
		"-m", "1", "-nostdin", "-timeout", "30", "-timeout_error", "-s", service}
	if ext.Number != "" {
		args = append(args, "-au", ext.Number, "-ap", ext.Secret)
	}
	args = append(args, extra...)
	args = append(args, netip.AddrPortFrom(TwinVIP.Addr(), 5060).String())
	cmd := n.Command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd
}

// runSipp runs a sipp command and fails the test with its output when it
// fails.
func runSipp(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: sipp failed: %v\n%s", what, err, testbed.SippReport(cmd.Stdout.(*bytes.Buffer).String()))
	}
}

// TestTwinBoxConfig checks the pair's configs without booting anything:
// each is valid, and each box's local addresses are the other's peer
// addresses.
func TestTwinBoxConfig(t *testing.T) {
	cfgs := map[string]*config.Config{}
	for _, node := range TwinNodes {
		cfg, err := TwinBoxConfig(node, twinPairingKey, twinAlice, twinBob)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("box %s: %v", node, err)
		}
		cfgs[node] = cfg
	}
	a, b := cfgs["a"].Cluster, cfgs["b"].Cluster
	if a.Peer != "b" || b.Peer != "a" {
		t.Errorf("peers %q and %q", a.Peer, b.Peer)
	}
	if a.Crossover.Local != b.Crossover.Peer || a.LAN.Local != b.LAN.Peer || a.Crossover.Peer != b.Crossover.Local || a.LAN.Peer != b.LAN.Local {
		t.Errorf("paths do not mirror: a %+v %+v, b %+v %+v", a.Crossover, a.LAN, b.Crossover, b.LAN)
	}
	if _, err := TwinBoxConfig("c", twinPairingKey); err == nil {
		t.Error("a third box was given a config")
	}
}

// TestTwinMachine checks that the two machines differ where they must:
// their tap, their MAC addresses and their ends of the crossover cable.
func TestTwinMachine(t *testing.T) {
	args := map[string]string{}
	for _, node := range TwinNodes {
		c := TwinMachine("/img", "/img/initramfs.cpio", node, "/d/"+node+".img")
		joined := strings.Join(Args(c), " ")
		for _, bad := range []string{"user,id=lan", "hostfwd"} {
			if strings.Contains(joined, bad) {
				t.Errorf("box %s is on QEMU's user network: %s", node, joined)
			}
		}
		for _, want := range []string{"ifname=tap-" + node, "-initrd /img/initramfs.cpio", "file=/d/" + node + ".img", "twinpbx.data=/dev/vda", "crc32c_generic,ext4"} {
			if !strings.Contains(joined, want) {
				t.Errorf("box %s: QEMU args lack %q:\n%s", node, want, joined)
			}
		}
		args[node] = joined
	}
	mac := func(s, nic string) string {
		i := strings.Index(s, "netdev="+nic+",mac=")
		if i < 0 {
			t.Fatalf("no MAC for %s in %s", nic, s)
		}
		return s[i : i+len("netdev="+nic+",mac=")+17]
	}
	for _, nic := range []string{"lan", "xover"} {
		if mac(args["a"], nic) == mac(args["b"], nic) {
			t.Errorf("both boxes have the %s MAC %s", nic, mac(args["a"], nic))
		}
	}
	if !strings.Contains(args["a"], "local.port=47701,remote.type=inet,remote.host=127.0.0.1,remote.port=47702") ||
		!strings.Contains(args["b"], "local.port=47702,remote.type=inet,remote.host=127.0.0.1,remote.port=47701") {
		t.Errorf("the crossover cable's ends do not meet:\na: %s\nb: %s", args["a"], args["b"])
	}
}
