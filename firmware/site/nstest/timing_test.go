package nstest

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestSiteFastTiming runs the site with site.timing "fast": while all
// three boxes live (and the machine is as busy as the other tests make
// it), no box is ever declared gone; a SIGKILLed box is shown gone by the
// others, and the time that took is logged (docs/SITE.md, "Measured").
func TestSiteFastTiming(t *testing.T) {
	s := newSite(t, func(c *config.Config) { c.Site.Timing = config.SiteTimingFast })
	s.waitFormed([]int{0, 1, 2}, 3, 60*time.Second)
	// Watch for a while: a box declared gone while alive would be a
	// flap, logged as "box left the site".
	quiet := time.Now().Add(5 * time.Second)
	waitFor(t, 30*time.Second, "5 s with every box alive", func() (bool, string) {
		for i := range s.nodes {
			st, err := s.status(i)
			if err != nil {
				return false, err.Error()
			}
			for _, m := range st.Site.Members {
				if m.State != "alive" {
					t.Fatalf("box%d sees %s %s while every box lives", i+1, m.Name, m.State)
				}
			}
		}
		return time.Now().After(quiet), "watching"
	})
	for i, p := range s.procs {
		if strings.Contains(p.Output(), "box left the site") {
			t.Fatalf("box%d saw a box leave while every box lived:\n%s", i+1, p.Output())
		}
	}

	if err := s.procs[1].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.procs[1].Done()
	start := time.Now()
	waitFor(t, 60*time.Second, "box 2 shown gone by boxes 1 and 3", func() (bool, string) {
		var why []string
		for _, i := range []int{0, 2} {
			st, err := s.status(i)
			if err != nil {
				return false, err.Error()
			}
			if state := st.memberState("box2"); state != "gone" {
				why = append(why, fmt.Sprintf("box%d sees box2 %q", i+1, state))
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	})
	t.Logf("timing fast: box 2 shown gone %v after SIGKILL", time.Since(start).Round(10*time.Millisecond))
}
