package nstest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
			s.t.Logf("the dispatcher's log:\n%s", testbed.Tail(p.Output(), 40))
		}
	})
	waitFor(s.t, 30*time.Second, "the dispatcher sees its backends up", func() (bool, string) {
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
	s.waitFormed([]int{0, 1, 2}, 3, 60*time.Second)
	lb := s.startDispatcher(1, 2)

	reg := s.sipp(s.phones[1], 0, "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob on box 1")
	waitFor(t, 30*time.Second, "bob's registration in the site table of boxes 2 and 3", func() (bool, string) {
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

// cdrCount is how many CDRs box i exports.
func (s *site) cdrCount(i int) int {
	s.t.Helper()
	out, err := exec.Command(binary, "cdr", "export", "--data", s.dirs[i]).Output()
	if err != nil {
		s.t.Fatalf("exporting box%d's CDRs: %v", i+1, err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1 // less the header
}

// TestSiteRegisterAndCallThroughDispatcher puts the dispatcher in front of
// all three boxes, as phones see a site: bob registers through it on
// whichever box it picks, and alice calls him through it until a call is
// taken by another box than bob's (the dispatcher picks by Call-ID). Every
// call connects: the box that takes it finds bob in the site table and
// calls him through the dispatcher, where his REGISTER came from.
func TestSiteRegisterAndCallThroughDispatcher(t *testing.T) {
	s := newSite(t)
	s.waitFormed([]int{0, 1, 2}, 3, 60*time.Second)
	lb := s.startDispatcher(0, 1, 2)

	reg := s.sippTo(s.phones[1], lb, "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob through the dispatcher")
	holder := -1
	for i := range s.nodes {
		st, err := s.status(i)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(st.Registrations, func(r registration) bool { return r.AOR == bob.Number }) {
			holder = i
		}
	}
	if holder < 0 {
		t.Fatal("no box holds bob's registration")
	}
	waitFor(t, 30*time.Second, "bob's registration in every box's site table", func() (bool, string) {
		for i := range s.nodes {
			st, err := s.status(i)
			if err != nil || st.Site.Bindings < 1 {
				return false, fmt.Sprintf("box%d: %v", i+1, err)
			}
		}
		return true, ""
	})
	for n := 1; ; n++ {
		uas := s.sippTo(s.phones[1], lb, "uas.xml", config.Extension{}, bob.Number)
		uac := s.sippTo(s.phones[0], lb, "uac.xml", alice, bob.Number,
			"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
			"-auth_uri", bob.Number+"@"+lb+":5060", "-d", "200")
		waitSipp(t, uac, fmt.Sprintf("call %d through the dispatcher: caller", n))
		waitSipp(t, uas, fmt.Sprintf("call %d through the dispatcher: callee", n))
		other := 0
		for i := range s.nodes {
			if i != holder {
				other += s.cdrCount(i)
			}
		}
		if other > 0 {
			t.Logf("call %d was the first taken by a box other than bob's box%d", n, holder+1)
			return
		}
		if n == 8 {
			t.Fatalf("8 calls, all taken by bob's own box%d: the dispatcher never picked another", holder+1)
		}
	}
}
