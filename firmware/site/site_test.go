package site

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// freePorts returns n TCP ports that were free on 127.0.0.1 (and UDP on the
// same numbers, for gossip).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		out = append(out, p)
	}
	return out
}

// testSite is one box of an in-process site on the loopback address.
type testSite struct {
	*Site
	opts Options
}

func startSites(t *testing.T, n int) []*testSite {
	t.Helper()
	return startSitesTB(t, n)
}

// startBenchSites starts three boxes with a leader for a benchmark.
func startBenchSites(b *testing.B) []*testSite {
	b.Helper()
	sites := startSitesTB(b, 3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := sites[0].Status()
		if st.Leader != "" && len(st.Voters) == 3 {
			return sites
		}
		if time.Now().After(deadline) {
			b.Fatalf("no site formed: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startSitesTB(t testing.TB, n int) []*testSite {
	t.Helper()
	ports := freePorts(t, 2*n)
	var seeds []string
	for i := range n {
		seeds = append(seeds, "127.0.0.1:"+strconv.Itoa(ports[2*i]))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var out []*testSite
	for i := range n {
		cfg := config.Site{
			Name: fmt.Sprintf("box%d", i+1), Bind: "127.0.0.1",
			GossipPort: ports[2*i], RaftPort: ports[2*i+1],
			Seeds: slices.Delete(slices.Clone(seeds), i, i+1),
			Key:   "test-site-key-0123456789", Expect: n, RemoveAfter: config.Duration(2 * time.Second),
		}
		o := Options{Config: cfg.Effective(""), Dir: t.TempDir(), Logger: logger.With("box", cfg.Name), Tick: 100 * time.Millisecond, ExpireEvery: time.Second,
			SIP: fmt.Sprintf("udp:127.0.0.1:%d", 15060+i)}
		ts := &testSite{opts: o}
		ts.start(t)
		out = append(out, ts)
	}
	return out
}

func (ts *testSite) start(t testing.TB) {
	t.Helper()
	s, err := Start(context.Background(), ts.opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Site = s
	t.Cleanup(func() { ts.stop() })
}

func (ts *testSite) stop() {
	if ts.Site != nil {
		_ = ts.Site.Close()
		ts.Site = nil
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func memberStates(st Status) string {
	var out []string
	for _, m := range st.Members {
		out = append(out, m.Name+"="+m.State)
	}
	return strings.Join(out, ",")
}

// TestSiteSharesRegistrations runs three boxes on the loopback address:
// they form the site by their seeds, a registration published on box 1 is
// found on box 3 (and not on box 1, which serves it itself), a removal
// reaches the others, box 2 stopping leaves a site that still takes
// changes, and box 2 back rejoins the voters.
func TestSiteSharesRegistrations(t *testing.T) {
	sites := startSites(t, 3)
	waitFor(t, 20*time.Second, "a leader with three voters", func() (bool, string) {
		st := sites[2].Status()
		return st.Leader != "" && len(st.Voters) == 3, fmt.Sprintf("leader %q voters %v alarms %v", st.Leader, st.Voters, st.Alarms)
	})
	b := location.Binding{AOR: "100", Contact: "sip:100@10.0.0.7:5062", Source: "udp:10.0.0.7:5062",
		Expires: time.Now().Add(time.Hour), Updated: time.Now()}
	sites[0].Published(b)
	waitFor(t, 10*time.Second, "box 1's registration on box 3", func() (bool, string) {
		got := sites[2].SharedLookup("100")
		return len(got) == 1 && got[0].Source == b.Source, fmt.Sprint(got)
	})
	// Box 3 forwards calls to bob to box 1, at the SIP address box 1
	// told the site.
	if got := sites[2].SharedLookup("100"); len(got) != 1 {
		t.Errorf("box 3 finds %d registrations of 100, want 1", len(got))
	} else if got[0].Holder != "box1" {
		t.Errorf("box 3 sees the registration held by %q, want box1", got[0].Holder)
	} else if to, ok := sites[2].Route(got[0]); !ok || to != "udp:127.0.0.1:15060" {
		t.Errorf("box 3 routes calls to bob to %q, %v; want box 1's udp:127.0.0.1:15060", to, ok)
	}
	if got := sites[0].SharedLookup("100"); len(got) != 0 {
		t.Errorf("box 1 finds its own registration in the shared table: %v", got)
	}
	if st := sites[0].Status(); st.Pending != 0 || len(st.Alarms) != 0 {
		t.Errorf("box 1 status after syncing: %+v", st)
	}

	sites[1].stop()
	waitFor(t, 15*time.Second, "box 2 gone in box 1's view", func() (bool, string) {
		st := sites[0].Status()
		i := slices.IndexFunc(st.Members, func(m Member) bool { return m.Name == "box2" })
		return i >= 0 && st.Members[i].State != "alive", memberStates(st)
	})
	b2 := location.Binding{AOR: "101", Contact: "sip:101@10.0.0.8:5062", Source: "udp:10.0.0.8:5062",
		Expires: time.Now().Add(time.Hour), Updated: time.Now()}
	sites[2].Published(b2)
	sites[0].Withdrawn(b.AOR, b.Contact)
	waitFor(t, 10*time.Second, "changes without box 2", func() (bool, string) {
		return len(sites[0].SharedLookup("101")) == 1 && len(sites[2].SharedLookup("100")) == 0,
			fmt.Sprint(sites[0].SharedLookup("101"), sites[2].SharedLookup("100"))
	})
	waitFor(t, 15*time.Second, "box 2 removed from the voters", func() (bool, string) {
		st := sites[0].Status()
		return len(st.Voters) == 2, fmt.Sprint(st.Voters)
	})

	sites[1].start(t)
	waitFor(t, 20*time.Second, "box 2 back among the voters with the table", func() (bool, string) {
		st := sites[1].Status()
		got := sites[1].SharedLookup("101")
		return len(st.Voters) == 3 && len(got) == 1 && st.Leader != "", fmt.Sprintf("voters %v leader %q lookup %v", st.Voters, st.Leader, got)
	})
}

// TestSiteWithoutQuorumSaysSo stops two boxes of three: the last one
// raises the no-quorum alarm and keeps taking its own registrations
// (they wait as pending).
func TestSiteWithoutQuorumSaysSo(t *testing.T) {
	sites := startSites(t, 3)
	waitFor(t, 20*time.Second, "a leader with three voters", func() (bool, string) {
		st := sites[0].Status()
		return st.Leader != "" && len(st.Voters) == 3, fmt.Sprint(st)
	})
	sites[1].stop()
	sites[2].stop()
	sites[0].Published(location.Binding{AOR: "100", Contact: "sip:100@10.0.0.7", Expires: time.Now().Add(time.Hour), Updated: time.Now()})
	waitFor(t, 20*time.Second, "the no-quorum alarm", func() (bool, string) {
		st := sites[0].Status()
		for _, a := range st.Alarms {
			if strings.Contains(a, "without quorum") {
				return st.Pending == 1, fmt.Sprintf("pending %d", st.Pending)
			}
		}
		return false, fmt.Sprint(st.Alarms, " leader ", st.Leader)
	})
}

// TestSiteNotFormedWhileAlone: a box alone with expect 3 does not start a
// log and says why.
func TestSiteNotFormedWhileAlone(t *testing.T) {
	sites := startSites(t, 1)
	sites[0].stop()
	sites[0].opts.Config.Expect = 3
	sites[0].opts.Dir = t.TempDir() // a new box: without a log of its own
	sites[0].start(t)
	waitFor(t, 5*time.Second, "the not-formed alarm", func() (bool, string) {
		st := sites[0].Status()
		return len(st.Alarms) == 1 && strings.Contains(st.Alarms[0], "not formed") && st.Leader == "", fmt.Sprint(st.Alarms)
	})
}

// lineHandler passes records to a function, for tests that wait for a
// log line.
type lineHandler struct {
	slog.Handler
	fn func(string)
}

func (h lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.fn(r.Message)
	return nil
}
func (h lineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h lineHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h lineHandler) WithGroup(string) slog.Handler            { return h }

// TestSiteRefusesAnotherKey: a box with another site key knocks on a
// box's gossip port; the box cannot read it and never lists it.
func TestSiteRefusesAnotherKey(t *testing.T) {
	sites := startSites(t, 1)
	refused := make(chan struct{}, 1)
	sites[0].stop()
	sites[0].opts.Logger = slog.New(lineHandler{Handler: slog.DiscardHandler, fn: func(msg string) {
		if strings.Contains(msg, "decrypt") {
			select {
			case refused <- struct{}{}:
			default:
			}
		}
	}})
	sites[0].start(t)
	ports := freePorts(t, 2)
	o := sites[0].opts
	o.Config.Name, o.Config.Key = "intruder", "another-site-key-0123456789"
	o.Config.GossipPort, o.Config.RaftPort = ports[0], ports[1]
	o.Config.Seeds = []string{"127.0.0.1:" + strconv.Itoa(sites[0].opts.Config.GossipPort)}
	o.Dir = t.TempDir()
	o.Logger = slog.New(slog.DiscardHandler)
	intruder := &testSite{opts: o}
	intruder.start(t)
	select {
	case <-refused:
	case <-time.After(10 * time.Second):
		t.Fatal("the box never refused the intruder's gossip")
	}
	for _, m := range sites[0].Status().Members {
		if m.Name == "intruder" {
			t.Fatalf("a box with another key is listed: %+v", sites[0].Status().Members)
		}
	}
}

// TestSiteLeaderHandsOver stops the leader cleanly: it hands leadership
// to another box, and a registration made on one of the two others
// reaches the other.
func TestSiteLeaderHandsOver(t *testing.T) {
	sites := startSites(t, 3)
	var leader string
	waitFor(t, 20*time.Second, "a leader with three voters", func() (bool, string) {
		st := sites[0].Status()
		leader = st.Leader
		return st.Leader != "" && len(st.Voters) == 3, fmt.Sprint(st)
	})
	var rest []*testSite
	for _, s := range sites {
		if s.opts.Config.Name == leader {
			s.stop()
		} else {
			rest = append(rest, s)
		}
	}
	if len(rest) != 2 {
		t.Fatalf("leader %q is none of the boxes", leader)
	}
	stopped := time.Now()
	waitFor(t, 20*time.Second, "a new leader", func() (bool, string) {
		st := rest[0].Status()
		return st.Leader != "" && st.Leader != leader, fmt.Sprintf("leader %q", st.Leader)
	})
	t.Logf("new leader %v after the old one stopped", time.Since(stopped).Round(10*time.Millisecond))
	b := location.Binding{AOR: "100", Contact: "sip:100@10.0.0.7:5062", Source: "udp:10.0.0.7:5062",
		Expires: time.Now().Add(time.Hour), Updated: time.Now()}
	rest[1].Published(b)
	waitFor(t, 10*time.Second, "a registration reaching the other box", func() (bool, string) {
		got := rest[0].SharedLookup("100")
		return len(got) == 1, fmt.Sprint(got)
	})
}
