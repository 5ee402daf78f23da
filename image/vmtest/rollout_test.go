package vmtest

import (
	"bytes"
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/image/build"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// Console lines of the rolling update (the node's log, init's commit).
const (
	markerStickRoll  = "update stick: rolling the pair to its version"
	markerSwitched   = "rolling update: switched over"
	markerBothOnNew  = "rolling update: this box came back on v2: both boxes run it"
	markerRollFailed = "rolling update stopped"
)

// TestTwinRollingUpdate boots the twin pair of TestTwin, each machine
// from its own A/B disk with v1 in slot A (the stage started with
// -kernel; its data on a second disk), registers Bob, and plugs an update
// stick with v2 into the active machine while it runs. The pair must
// roll by itself: the standby fetches v2 over the pair's link, tries it
// and commits, the active switches over to it, then updates itself the
// same way. A phone asks the VIP every 20 ms throughout: the longest
// unanswered stretch is logged (the switchover's gap) and must stay under
// a generous bound. At the end both disks run v2 from slot B, and Alice
// calls Bob through the new active without Bob registering again.
func TestTwinRollingUpdate(t *testing.T) {
	requireVM(t)
	requireTwinNet(t)
	img := image(t)
	key := updateKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	initrd, err := Uncompressed(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// The stick: bundle v2, padded to whole sectors as on a disk.
	if _, err := build.BuildDisk(ctx, build.DiskOptions{Image: img, Out: dir, Version: "v2", Key: key, NoDisk: true}); err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, build.Bundle))
	if err != nil {
		t.Fatal(err)
	}
	stick := filepath.Join(dir, "stick.img")
	if err := os.WriteFile(stick, append(bundle, make([]byte, 4096-len(bundle)%4096)...), 0o644); err != nil {
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
	vms, disks, qmp := map[string]*Machine{}, map[string]update.ImageDisk{}, map[string]string{}
	for _, node := range TwinNodes {
		out := filepath.Join(dir, node)
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := build.BuildDisk(ctx, build.DiskOptions{Image: img, Out: out, Version: "v1", Key: key, NoESP: true, DataSize: 32 << 20}); err != nil {
			t.Fatal(err)
		}
		disks[node] = update.ImageDisk{Path: filepath.Join(out, build.Disk)}
		cfg, err := TwinBoxConfig(node, twinPairingKey, twinAlice, twinBob)
		if err != nil {
			t.Fatal(err)
		}
		// The slow preset (a tick every 200 ms): the active hands over
		// after a single gateway probe (ARP, 100 ms) that went
		// unanswered, and TCG guests on a busy host miss one every few
		// seconds at 50 ms ticks, which keeps the pair from ever having
		// a standby in sync for minutes on end.
		cfg.Cluster.Timing = "slow"
		data, err := TwinDisk(ctx, dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		qmp[node] = filepath.Join(dir, node+".qmp")
		c := TwinMachine(img, initrd, node, data)
		// Not niced, unlike TestTwin: the roll lasts minutes, and niced
		// TCG guests on a busy host stall past the gateway probe's
		// 100 ms, so the pair hands service back and forth and never
		// has a standby in sync to update.
		c.Nice = false
		c.Append += " twinpbx.trial.deadline=150s"
		// The A/B disk after the data disk (vdb); a reboot restarts the
		// machine into the stage, as on a box.
		c.Extra = append(c.Extra, "-drive", "file="+disks[node].Path+",if=virtio,format=raw", "-action", "reboot=reset")
		c.Extra = append(c.Extra, HotplugArgs(qmp[node])...)
		vms[node] = startTwinVM(t, tn, node, c)
	}
	started := time.Now()

	phone, vip, active, standby := settledPair(ctx, t, tn)
	if _, err := vms[standby].WaitConsole(ctx, markerInSync); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s active, %s in sync, %v after the machines started (both on v1, booted through the stage)", active, standby, time.Since(started).Round(100*time.Millisecond))
	runSipp(t, tn.sipp(ctx, 1, "register.xml", twinBob, twinBob.Number, "-key", "expires", "600"), "registering bob")

	// A phone watches the VIP for the whole roll.
	var conn *net.UDPConn
	if err := tn.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IP(phone.AsSlice())})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	watch, err := WatchVIP(conn, vip, 20*time.Millisecond)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(watch.Stop)

	plugged := time.Now()
	if err := PlugStick(ctx, qmp[active], stick); err != nil {
		t.Fatal(err)
	}
	step := func(m *Machine, node, marker string) time.Duration {
		t.Helper()
		if _, err := m.waitConsoleFrom(ctx, 0, marker); err != nil {
			if strings.Contains(vms[active].Console(), markerRollFailed) {
				t.Fatalf("the roll stopped: see %s's console", active)
			}
			t.Fatalf("%s: %v", node, err)
		}
		d := time.Since(plugged).Round(100 * time.Millisecond)
		t.Logf("%v after the stick was plugged in: %s: %s", d, node, marker)
		return d
	}
	step(vms[active], active, markerStickRoll)
	step(vms[standby], standby, markerCommitted)
	step(vms[active], active, markerSwitched)
	switched := time.Now()
	step(vms[active], active, markerCommitted)
	step(vms[active], active, markerBothOnNew)
	done := time.Now()
	// The new active answers calls: Alice calls Bob, who did not
	// register again.
	if got := answering(ctx, t, tn, phone, vip); got != standby {
		t.Fatalf("after the roll %q answers on the VIP, want %s (the first box updated)", got, standby)
	}
	uas := tn.sipp(ctx, 1, "uas.xml", config.Extension{}, twinBob.Number)
	if err := uas.Start(); err != nil {
		t.Fatalf("starting bob's sipp: %v", err)
	}
	uac := tn.sipp(ctx, 0, "uac.xml", twinAlice, twinBob.Number,
		"-key", "caller", twinAlice.Number, "-key", "caller_name", twinAlice.Name,
		"-auth_uri", twinBob.Number+"@"+vip, "-d", "200")
	runSipp(t, uac, "alice calls bob through "+standby+" after the roll")
	if err := uas.Wait(); err != nil {
		t.Fatalf("bob's phone: sipp failed: %v\n%s", err, testbed.SippReport(uas.Stdout.(*bytes.Buffer).String()))
	}
	watch.Stop()

	answers := watch.Answers()
	gap, at := Gap(answers, plugged, done)
	servers := map[string]bool{}
	for _, a := range answers {
		servers[a.Server] = true
	}
	t.Logf("the VIP during the roll (%v): %d answers from %v; longest unanswered stretch %v, from %v after the stick was plugged in (switchover at %v)",
		done.Sub(plugged).Round(100*time.Millisecond), len(answers), slices.Sorted(maps.Keys(servers)), gap.Round(10*time.Millisecond),
		at.Sub(plugged).Round(10*time.Millisecond), switched.Sub(plugged).Round(100*time.Millisecond))
	if gap > 5*time.Second {
		t.Errorf("the VIP went unanswered for %v during the roll", gap)
	}

	for _, node := range TwinNodes {
		vms[node].Kill()
		s, err := update.ReadBootState(disks[node])
		if err != nil {
			t.Fatal(err)
		}
		if s.Active != update.SlotB || s.Version(update.SlotB) != "v2" || s.Trial != update.NoSlot || s.Failed != "" {
			t.Errorf("%s's boot state after the roll: %+v, want v2 active in slot B", node, s)
		}
	}
	t.Logf("whole test %v", time.Since(started).Round(time.Second))
}

func TestGap(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) VIPAnswer { return VIPAnswer{At: t0.Add(time.Duration(ms) * time.Millisecond)} }
	tests := []struct {
		name    string
		answers []VIPAnswer
		to      int
		gap, at int
	}{
		{"steady", []VIPAnswer{at(20), at(40), at(60)}, 80, 20, 0},
		{"a hole", []VIPAnswer{at(20), at(40), at(500), at(520)}, 540, 460, 40},
		{"silent at the end", []VIPAnswer{at(20)}, 1000, 980, 20},
		{"nothing", nil, 300, 300, 0},
		{"answers outside the window do not count", []VIPAnswer{at(-50), at(100), at(2000)}, 200, 100, 0},
	}
	for _, tt := range tests {
		gap, from := Gap(tt.answers, t0, t0.Add(time.Duration(tt.to)*time.Millisecond))
		if gap != time.Duration(tt.gap)*time.Millisecond || !from.Equal(t0.Add(time.Duration(tt.at)*time.Millisecond)) {
			t.Errorf("%s: gap %v from %v, want %dms from %dms", tt.name, gap, from.Sub(t0), tt.gap, tt.at)
		}
	}
}

func TestCallIDOf(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"SIP/2.0 200 OK\r\nCall-ID: abc\r\n\r\n", "abc"},
		{"SIP/2.0 200 OK\r\ncall-id:  x y \r\n\r\n", "x y"},
		{"SIP/2.0 200 OK\r\ni: short\r\n\r\n", "short"},
		{"SIP/2.0 200 OK\r\n\r\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := callIDOf([]byte(tt.msg)); got != tt.want {
			t.Errorf("callIDOf(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
