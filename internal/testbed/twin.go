package testbed

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TwinConfig is the config of twin box n (A or B) on this bed: SIP on the
// VIP, the bed's crossover and LAN addresses (swapped for the other box),
// the gateway as tie-breaker, a 3 s watchdog. Both boxes given the same
// key and extensions pair with each other.
func (b *Bed) TwinConfig(n Node, pairingKey string, exts ...config.Extension) *config.Config {
	twin := n.Twin()
	vip := b.VIP()
	return &config.Config{
		Node: config.Node{Name: string(n)},
		SIP: config.SIP{
			Listen:    []string{"udp:" + netip.AddrPortFrom(vip.Addr(), 5060).String()},
			Advertise: vip.Addr().String(),
			RTPPorts:  "30000-30099",
		},
		Extensions: exts,
		Cluster: &config.Cluster{
			Peer:            string(twin),
			PairingKey:      pairingKey,
			Crossover:       config.Path{Local: b.CrossoverAddr(n).String(), Peer: b.CrossoverAddr(twin).String()},
			LAN:             config.Path{Local: b.Addr(n).String(), Peer: b.Addr(twin).String()},
			LANInterface:    LANInterface,
			VIP:             vip.String(),
			Gateway:         b.Addr(Gateway).String(),
			WatchdogTimeout: config.Duration(3 * time.Second),
		},
	}
}

// ChildPID returns the first child of process pid (the worker that a
// `twinpbx run` supervisor started), or an error when it has none now.
func ChildPID(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, field := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(field); err == nil && c > 0 {
				return c, nil
			}
		}
	}
	return 0, fmt.Errorf("process %d has no child now", pid)
}
