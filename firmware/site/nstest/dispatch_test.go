package nstest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// startDispatcher runs a dispatcher (docs/DISPATCHER.md) on the bed's
// gateway node in front of the given boxes and waits until it sees them
// all up. It returns the dispatcher's address.
func (s *site) startDispatcher(backends ...int) string {
	s.t.Helper()
	addr := s.bed.Addr(testbed.Gateway).String()
	d := &config.Dispatcher{Algorithm: "hash-callid", ProbeInterval: config.Duration(200 * time.Millisecond)}
	for _, i := range backends {
		d.Backends = append(d.Backends, config.DispatcherBackend{URI: s.addr(i) + ":5060"})
	}
	c := &config.Config{Node: config.Node{Name: "lb"}, SIP: config.SIP{Listen: []string{"udp:" + addr + ":5060"}}, Dispatcher: d}
	if err := c.Validate(); err != nil {
		s.t.Fatalf("the dispatcher's config: %v", err)
	}
	text, err := config.Marshal(c)
	if err != nil {
		s.t.Fatal(err)
	}
	dir := s.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), text, 0o600); err != nil {
		s.t.Fatal(err)
	}
	p, err := s.bed.Start(testbed.Gateway, binary, "run", "--config", filepath.Join(dir, "config.yaml"), "--data", dir)
	if err != nil {
		s.t.Fatalf("starting the dispatcher: %v", err)
	}
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("the dispatcher's log:\n%s", tail(p.Output(), 40))
		}
	})
	waitFor(s.t, 15*time.Second, "the dispatcher sees its backends up", func() (bool, string) {
		out, err := exec.Command(binary, "status", "--data", dir).Output()
		if err != nil {
			return false, err.Error()
		}
		var st struct {
			Dispatcher struct {
				Backends []struct {
					Addr string
					Up   bool
				}
			}
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return false, fmt.Sprintf("%v: %s", err, out)
		}
		up := 0
		for _, b := range st.Dispatcher.Backends {
			if b.Up {
				up++
			}
		}
		return up == len(backends), string(out)
	})
	return addr
}

// TestSiteCallThroughDispatcher puts the dispatcher in front of boxes 2
// and 3 while bob's phone is registered on box 1: whichever backend the
// dispatcher picks for alice's call, it finds bob through the site table
// and the call connects.
func TestSiteCallThroughDispatcher(t *testing.T) {
	s := newSite(t)
	s.waitFormed([]int{0, 1, 2}, 3, 30*time.Second)
	lb := s.startDispatcher(1, 2)

	reg := s.sipp(s.phones[1], 0, "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob on box 1")
	waitFor(t, 10*time.Second, "bob's registration in the site table of boxes 2 and 3", func() (bool, string) {
		for _, i := range []int{1, 2} {
			st, err := s.status(i)
			if err != nil {
				return false, err.Error()
			}
			if st.Site.Bindings < 1 {
				return false, fmt.Sprintf("box%d holds %d", i+1, st.Site.Bindings)
			}
		}
		return true, ""
	})
	for n := range 2 {
		uas := s.sippTo(s.phones[1], lb, "uas.xml", config.Extension{}, bob.Number)
		uac := s.sippTo(s.phones[0], lb, "uac.xml", alice, bob.Number,
			"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
			"-auth_uri", bob.Number+"@"+lb+":5060", "-d", "200")
		waitSipp(t, uac, fmt.Sprintf("call %d through the dispatcher: caller", n+1))
		waitSipp(t, uas, fmt.Sprintf("call %d through the dispatcher: callee", n+1))
	}
}
