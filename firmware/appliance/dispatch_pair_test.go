package appliance

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// lbPort is the dispatcher's port in these tests: one free when the
// package's tests start.
var lbPort = func() int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}()

// lbConfig is a dispatcher config on loopback in front of backends.
func lbConfig(version uint64, backends ...string) *config.Config {
	d := &config.Dispatcher{ProbeInterval: config.Duration(time.Hour)}
	for _, b := range backends {
		d.Backends = append(d.Backends, config.DispatcherBackend{URI: b})
	}
	return &config.Config{Version: version, Node: config.Node{Name: "lb-a"},
		SIP: config.SIP{Listen: []string{"udp:127.0.0.1:" + strconv.Itoa(lbPort)}}, Dispatcher: d}
}

// silentBackends returns n addresses of loopback sockets that take the
// probes and answer nothing.
func silentBackends(t *testing.T, n int) []string {
	var out []string
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		out = append(out, c.LocalAddr().String())
	}
	return out
}

// startRunner prepares r with cfg and runs it until the test ends.
func startRunner(t *testing.T, r *dispatchRunner, cfg *config.Config) {
	t.Helper()
	if err := r.prepare(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{}, 8)
	done := make(chan error, 1)
	go func() { done <- r.run(ctx, func([]string) { ready <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the dispatcher runner: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the dispatcher did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the dispatcher did not start within 10s")
	}
}

func newRunner() *dispatchRunner {
	return &dispatchRunner{log: slog.New(slog.DiscardHandler), gate: func() bool { return true }, probeFrom: "127.0.0.1", server: "twinpbx/lb-a"}
}

// TestDispatchRunnerReload: a config with the same dispatcher settings
// keeps the running dispatcher (and so its view of the backends); other
// settings replace it; a config without a dispatcher is refused.
func TestDispatchRunnerReload(t *testing.T) {
	bs := silentBackends(t, 2)
	r := newRunner()
	startRunner(t, r, lbConfig(1, bs[0]))
	first := r.cur

	if err := r.Reload(lbConfig(2, bs[0])); err != nil {
		t.Fatal(err)
	}
	if r.cur != first || r.version.Load() != 2 {
		t.Errorf("the same settings replaced the dispatcher (or version %d, want 2)", r.version.Load())
	}
	if err := r.Reload(lbConfig(3, bs...)); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); len(st.Backends) != 2 || r.version.Load() != 3 {
		t.Errorf("after new settings: %d backends, version %d; want 2 and 3", len(st.Backends), r.version.Load())
	}
	nd := lbConfig(4)
	nd.Dispatcher = nil
	if err := r.Reload(nd); err == nil {
		t.Error("a config without a dispatcher section was applied")
	}
	if err := r.Reload(lbConfig(5, "sip:x@127.0.0.1")); err == nil {
		t.Error("a backend with a user part was applied")
	}
	if st := r.Status(); len(st.Backends) != 2 {
		t.Errorf("a refused config changed the dispatcher: %d backends", len(st.Backends))
	}
}

// TestDispatchRunnerFollow: a config version that reaches the store (on a
// standby, by replication) is applied without a takeover.
func TestDispatchRunnerFollow(t *testing.T) {
	bs := silentBackends(t, 2)
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg, err := boxconfig.Save(st, lbConfig(0, bs[0]))
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner()
	startRunner(t, r, cfg)
	load := func() (*config.Config, error) { return latestConfig(st) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.follow(ctx, st, load, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	next, err := boxconfig.Save(st, lbConfig(0, bs...))
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 10*time.Second, "the new version applied", func() bool {
		return r.version.Load() == next.Version && len(r.Status().Backends) == 2
	})
}
