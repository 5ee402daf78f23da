package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

func toolNames() []string { return []string{"twinpbx", "keepalived-1", "keepalived-0.1"} }

func faultNames() []string { return []string{"kill", "poweroff", "lancut", "xcut"} }

func faultTitle(f string) string {
	switch f {
	case "kill":
		return "active software SIGKILL"
	case "poweroff":
		return "active power off"
	case "lancut":
		return "LAN carrier cut on the active"
	case "xcut":
		return "silent crossover cut"
	}
	return f
}

// pair is one tool's two nodes running on a bed.
type pair interface {
	// settle waits until one node serves and returns it.
	settle(ctx context.Context) (testbed.Node, error)
	// breakIt injects a fault on the active node.
	breakIt(ctx context.Context, fault string, active testbed.Node) error
}

// breakCommon injects the faults every tool shares; kill is the tool's.
func breakCommon(ctx context.Context, bed *testbed.Bed, fault string, active testbed.Node) error {
	switch fault {
	case "poweroff":
		return bed.PowerOff(ctx, active)
	case "lancut":
		return bed.CutLink(ctx, active, testbed.LAN, testbed.Carrier)
	case "xcut":
		return bed.CutLink(ctx, active, testbed.Crossover, testbed.Silent)
	}
	return fmt.Errorf("unknown fault %q", fault)
}

// twinPair is a twinpbx twin pair.
type twinPair struct {
	bed    *testbed.Bed
	binary string
	data   map[testbed.Node]string
	procs  map[testbed.Node]*testbed.Process
}

const pairingKey = "bench-failover-pairing-key-0123456789"

func startTwinpbx(ctx context.Context, bed *testbed.Bed, binary, dir string) (pair, error) {
	p := &twinPair{bed: bed, binary: binary, data: map[testbed.Node]string{}, procs: map[testbed.Node]*testbed.Process{}}
	prof := board.Sim()
	prof.Relay.StateFile = filepath.Join(dir, "relay-state")
	text, err := prof.Marshal()
	if err != nil {
		return nil, err
	}
	boardFile := filepath.Join(dir, "board.yaml")
	if err := os.WriteFile(boardFile, text, 0o600); err != nil {
		return nil, err
	}
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		cfg := bed.TwinConfig(n, pairingKey, config.Extension{Number: "100", Name: "Bench", Secret: "bench-secret-100"})
		text, err := config.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		cfgFile := filepath.Join(dir, string(n)+".yaml")
		if err := os.WriteFile(cfgFile, text, 0o600); err != nil {
			return nil, err
		}
		p.data[n] = filepath.Join(dir, "data-"+string(n))
		if err := os.Mkdir(p.data[n], 0o700); err != nil {
			return nil, err
		}
		proc, err := bed.Start(n, binary, "run", "--config", cfgFile, "--data", p.data[n], "--board", boardFile)
		if err != nil {
			return nil, fmt.Errorf("starting twinpbx on %s: %w", n, err)
		}
		p.procs[n] = proc
	}
	return p, nil
}

// twinStatus is the part of `twinpbx status` the benchmark reads.
type twinStatus struct {
	Role    string `json:"role"`
	Cluster struct {
		Serving     bool `json:"serving"`
		Replication struct {
			InSync bool `json:"in_sync"`
		} `json:"replication"`
	} `json:"cluster"`
}

func (p *twinPair) status(ctx context.Context, n testbed.Node) (twinStatus, error) {
	var s twinStatus
	out, err := exec.CommandContext(ctx, p.binary, "status", "--data", p.data[n]).Output()
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(out, &s)
}

func (p *twinPair) settle(ctx context.Context) (testbed.Node, error) {
	var active testbed.Node
	err := waitUntil(ctx, "one twin active, the other a standby in sync", func() bool {
		for _, n := range []testbed.Node{testbed.A, testbed.B} {
			s, err := p.status(ctx, n)
			if err != nil || s.Role != "active" || !s.Cluster.Serving {
				continue
			}
			t, err := p.status(ctx, n.Twin())
			if err == nil && t.Role == "standby" && t.Cluster.Replication.InSync {
				active = n
				return true
			}
		}
		return false
	})
	if err != nil {
		return "", fmt.Errorf("%w\nbox a:\n%s\nbox b:\n%s", err, tail(p.procs[testbed.A].Output()), tail(p.procs[testbed.B].Output()))
	}
	return active, nil
}

func tail(s string) string {
	ls := strings.Split(s, "\n")
	return strings.Join(ls[max(0, len(ls)-20):], "\n")
}

func (p *twinPair) breakIt(ctx context.Context, fault string, active testbed.Node) error {
	if fault != "kill" {
		return breakCommon(ctx, p.bed, fault, active)
	}
	// The node process: the supervisor's worker when `twinpbx run`
	// supervises one, else the process itself.
	pid := nodeProcess(p.procs[active].Pid())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing twinpbx %d: %w", pid, err)
	}
	return nil
}

// nodeProcess is pid's child when it has one, else pid.
func nodeProcess(pid int) int {
	if c, err := testbed.ChildPID(pid); err == nil {
		return c
	}
	return pid
}

// kaPair is keepalived on both nodes, each with a responder on the VIP.
type kaPair struct {
	bed        *testbed.Bed
	keepalived map[testbed.Node]*testbed.Process
	responder  map[testbed.Node]*testbed.Process
}

// startKeepalived starts keepalived (VRRP on the LAN interface, priority
// 150 on A and 100 on B, A starting as master) and the responders.
func startKeepalived(ctx context.Context, bed *testbed.Bed, self, dir, advert string, version int) (pair, error) {
	p := &kaPair{bed: bed, keepalived: map[testbed.Node]*testbed.Process{}, responder: map[testbed.Node]*testbed.Process{}}
	vrid := 1 + int(bed.LAN.Addr().As4()[2])%254 // per bed: beds do not share a LAN, but be tidy
	vip := bed.VIP()
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		state, prio := "MASTER", 150
		if n == testbed.B {
			state, prio = "BACKUP", 100
		}
		conf := fmt.Sprintf(`global_defs {
    router_id bench_%s
    vrrp_version %d
    script_user root
}
vrrp_instance VI_BENCH {
    state %s
    interface %s
    virtual_router_id %d
    priority %d
    advert_int %s
    virtual_ipaddress {
        %s dev %s
    }
}
`, n, version, state, testbed.LANInterface, vrid, prio, advert, vip, testbed.LANInterface)
		file := filepath.Join(dir, "keepalived-"+string(n)+".conf")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		resp, err := bed.Start(n, self, "respond", "-addr", netip.AddrPortFrom(vip.Addr(), 5060).String(), "-name", string(n))
		if err != nil {
			return nil, fmt.Errorf("starting the responder on %s: %w", n, err)
		}
		p.responder[n] = resp
		ka, err := bed.Start(n, "keepalived", "--dont-fork", "--log-console", "--vrrp", "--use-file", file,
			"--pid", filepath.Join(dir, "ka-"+string(n)+".pid"),
			"--vrrp_pid", filepath.Join(dir, "ka-vrrp-"+string(n)+".pid"),
			"--checkers_pid", filepath.Join(dir, "ka-check-"+string(n)+".pid"))
		if err != nil {
			return nil, fmt.Errorf("starting keepalived on %s: %w", n, err)
		}
		p.keepalived[n] = ka
	}
	return p, nil
}

func (p *kaPair) settle(ctx context.Context) (testbed.Node, error) {
	err := waitUntil(ctx, "A holding the VIP", func() bool {
		both, _ := bothHoldVIP(ctx, p.bed)
		if both {
			return false
		}
		out, err := p.bed.Exec(ctx, p.bed.NS(testbed.A), "ip", "-o", "addr", "show", "dev", testbed.LANInterface)
		return err == nil && strings.Contains(string(out), " "+p.bed.VIP().Addr().String()+"/")
	})
	if err != nil {
		return "", fmt.Errorf("%w\nkeepalived a:\n%s\nresponder a:\n%s", err, tail(p.keepalived[testbed.A].Output()), tail(p.responder[testbed.A].Output()))
	}
	return testbed.A, nil
}

func (p *kaPair) breakIt(ctx context.Context, fault string, active testbed.Node) error {
	if fault != "kill" {
		return breakCommon(ctx, p.bed, fault, active)
	}
	// keepalived and the service die together (the box's software).
	return errors.Join(p.keepalived[active].Signal(syscall.SIGKILL), p.responder[active].Signal(syscall.SIGKILL))
}
