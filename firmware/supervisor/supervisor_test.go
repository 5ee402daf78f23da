package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// harness runs a Supervisor over the test binary as its child.
type harness struct {
	t      *testing.T
	s      *Supervisor
	sigC   chan os.Signal
	cancel context.CancelFunc
	done   chan error
	dir    string // the child's scratch folder

	mu     sync.Mutex
	delays []time.Duration
}

// start runs a supervisor with cfg over children playing modes in turn.
// Backoff delays are recorded and not waited out. Everything is stopped
// and killed at cleanup, whether or not the test failed.
func start(t *testing.T, cfg Config, rec *exitRecorder, modes ...string) *harness {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sigC: make(chan os.Signal, 1), done: make(chan error, 1), dir: t.TempDir()}
	cfg.Path = exe
	cfg.Env = append(cfg.Env, envTestChild+"="+h.dir, envTestModes+"="+strings.Join(modes, ","))
	cfg.Signals = h.sigC
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 10 * time.Millisecond
	}
	if rec != nil {
		cfg.OnChildExit = rec.onExit
	}
	h.s, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rec != nil {
		rec.s = h.s
	}
	h.s.after = func(d time.Duration) <-chan time.Time {
		h.mu.Lock()
		h.delays = append(h.delays, d)
		h.mu.Unlock()
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.s.Run(ctx) }()
	t.Cleanup(func() {
		pid := h.s.State().PID
		cancel()
		select {
		case <-h.done:
		case <-time.After(15 * time.Second):
			t.Error("supervisor did not stop")
		}
		if pid != 0 {
			_ = unix.Kill(-pid, syscall.SIGKILL)
		}
		if pid := h.s.State().PID; pid != 0 {
			_ = unix.Kill(-pid, syscall.SIGKILL)
		}
	})
	return h
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, within, what, cond)
}

// countLines counts log lines containing sub.
func (h *harness) countLines(sub string) int {
	n := 0
	for _, l := range h.s.Lines() {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func (h *harness) waitLines(sub string, n int) {
	h.t.Helper()
	waitFor(h.t, 10*time.Second, "log line "+sub, func() bool { return h.countLines(sub) >= n })
}

func (h *harness) result() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		h.t.Fatal("Run did not return")
		return nil
	}
}

type exitCall struct {
	code       int
	signal     string
	startsThen int
	pid        int
	pidGone    bool
}

// exitRecorder is an OnChildExit that notes what it saw.
type exitRecorder struct {
	s     *Supervisor // set before Run starts
	mu    sync.Mutex
	calls []exitCall
}

func (r *exitRecorder) onExit(code int, sig string) {
	st := r.s.State()
	last := st.Exits[len(st.Exits)-1]
	gone := errors.Is(unix.Kill(last.PID, 0), unix.ESRCH)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, exitCall{code: code, signal: sig, startsThen: st.Starts, pid: last.PID, pidGone: gone})
}

func (r *exitRecorder) get() []exitCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func TestRestartWithBackoff(t *testing.T) {
	cfg := Config{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 25 * time.Millisecond, HealthyAfter: time.Hour}
	rec := &exitRecorder{}
	h := start(t, cfg, rec, "exit:1", "kill", "exit:3", "healthy")
	h.waitLines("ready", 1)

	st := h.s.State()
	if st.Starts != 4 || st.Restarts != 3 || st.PID == 0 {
		t.Errorf("state = %+v, want 4 starts, 3 restarts, a child running", st)
	}
	h.mu.Lock()
	delays := slices.Clone(h.delays)
	h.mu.Unlock()
	if want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond}; !slices.Equal(delays, want) {
		t.Errorf("backoff delays = %v, want %v", delays, want)
	}
	wantReasons := []string{"exited with code 1", "killed by SIGKILL", "exited with code 3"}
	var reasons []string
	for _, e := range st.Exits {
		reasons = append(reasons, e.Reason)
	}
	if !slices.Equal(reasons, wantReasons) {
		t.Errorf("exit reasons = %q, want %q", reasons, wantReasons)
	}

	want := []exitCall{{code: 1, startsThen: 1}, {code: -1, signal: "SIGKILL", startsThen: 2}, {code: 3, startsThen: 3}}
	calls := rec.get()
	if len(calls) != len(want) {
		t.Fatalf("OnChildExit calls = %+v, want %d", calls, len(want))
	}
	for i, c := range calls {
		// startsThen proves the hook ran before the next start; pidGone
		// that the child was dead by then.
		if c.code != want[i].code || c.signal != want[i].signal || c.startsThen != want[i].startsThen || !c.pidGone {
			t.Errorf("OnChildExit call %d = %+v, want %+v with the child gone", i, c, want[i])
		}
	}
}

func TestNoRestartOnConfigError(t *testing.T) {
	cfg := Config{}
	rec := &exitRecorder{}
	h := start(t, cfg, rec, "exit:78", "healthy")
	err := h.result()
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.NoRestart || ExitCode(err) != ExitConfigError {
		t.Fatalf("Run = %v, want an ExitError with NoRestart and code 78", err)
	}
	if !strings.Contains(err.Error(), "configuration error") || !strings.Contains(err.Error(), "not restarting") {
		t.Errorf("error %q does not say why", err)
	}
	if st := h.s.State(); st.Starts != 1 {
		t.Errorf("started %d children, want 1", st.Starts)
	}
	if calls := rec.get(); len(calls) != 1 || calls[0].code != 78 {
		t.Errorf("OnChildExit calls = %+v, want one with code 78", calls)
	}
	if h.countLines("asked not to be restarted") != 1 {
		t.Errorf("no log line says why it stopped: %q", h.s.Lines())
	}
}

func TestWatchdogResetsHungChild(t *testing.T) {
	const timeout = time.Second
	dir := t.TempDir()
	cfg := Config{WatchdogTimeout: timeout, Dir: dir}
	rec := &exitRecorder{}
	h := start(t, cfg, rec, "healthy", "healthy")
	h.waitLines("ready", 1)
	waitFor(t, 5*time.Second, "the watchdog armed", func() bool { return h.s.State().WatchdogArmed })
	if h.countLines("boot reset=false") != 1 {
		t.Fatalf("first child did not report a clean boot: %q", h.s.Lines())
	}

	pid := h.s.State().PID
	stopped := time.Now()
	if err := unix.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Killed within the timeout after its last kick (at most a kick
	// period before the SIGSTOP), restarted after a 10 ms backoff; the
	// rest is slack for a loaded machine.
	within := timeout + timeout/5 + 2*time.Second
	waitFor(t, within, "a new child", func() bool {
		st := h.s.State()
		return st.Starts == 2 && st.PID != 0 && st.PID != pid
	})
	t.Logf("restarted %v after SIGSTOP", time.Since(stopped))
	h.waitLines("boot reset=true", 1)

	st := h.s.State()
	if st.WatchdogResets != 1 || len(st.Exits) != 1 || !st.Exits[0].WatchdogReset || st.Exits[0].Signal != "SIGKILL" {
		t.Errorf("state = %+v, want one watchdog reset ending in SIGKILL", st)
	}
	if !strings.Contains(st.Exits[0].Reason, "watchdog") {
		t.Errorf("reason %q does not name the watchdog", st.Exits[0].Reason)
	}
	if _, err := os.Stat(filepath.Join(dir, watchdogRecordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reset record left behind after the next start: %v", err)
	}
	if calls := rec.get(); len(calls) != 1 || calls[0].signal != "SIGKILL" || !calls[0].pidGone {
		t.Errorf("OnChildExit calls = %+v, want one after SIGKILL", calls)
	}

	// A deliberate stop disarms the watchdog and ends the run cleanly.
	h.sigC <- syscall.SIGTERM
	if err := h.result(); err != nil {
		t.Errorf("Run after SIGTERM = %v, want nil", err)
	}
	if h.countLines("disarmed the watchdog") != 1 {
		t.Errorf("child did not disarm on shutdown: %q", h.s.Lines())
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		signal   os.Signal // nil: cancel the context
		timeout  time.Duration
		wantCode int
		wantLine string
	}{
		{name: "SIGINT forwarded, status passed on", mode: "healthy:3", signal: syscall.SIGINT, wantCode: 3, wantLine: "got interrupt"},
		{name: "SIGTERM forwarded, clean exit", mode: "healthy", signal: syscall.SIGTERM, wantCode: 0, wantLine: "got terminated"},
		{name: "context cancelled sends SIGTERM", mode: "healthy:0", wantCode: 0, wantLine: "got terminated"},
		{name: "ignored SIGTERM killed after the stop timeout", mode: "ignore-term", signal: syscall.SIGTERM, timeout: 100 * time.Millisecond, wantCode: 128 + 9, wantLine: "did not stop in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{StopTimeout: tt.timeout, WatchdogTimeout: 10 * time.Second}
			rec := &exitRecorder{}
			h := start(t, cfg, rec, tt.mode)
			h.waitLines("ready", 1)
			if tt.signal != nil {
				h.sigC <- tt.signal
			} else {
				h.cancel()
			}
			err := h.result()
			if got := ExitCode(err); got != tt.wantCode {
				t.Errorf("Run = %v (exit code %d), want exit code %d", err, got, tt.wantCode)
			}
			if h.countLines(tt.wantLine) != 1 {
				t.Errorf("no line %q in %q", tt.wantLine, h.s.Lines())
			}
			if st := h.s.State(); st.Starts != 1 || st.PID != 0 || !st.Stopping {
				t.Errorf("state = %+v, want one start, no child, stopping", st)
			}
			if calls := rec.get(); len(calls) != 1 {
				t.Errorf("OnChildExit ran %d times, want once", len(calls))
			}
		})
	}
}

func TestRingKeepsLastLines(t *testing.T) {
	h := start(t, Config{LogLines: 20, Logger: discardLogger()}, nil, "spam:100")
	h.waitLines("ready", 1)
	lines := h.s.Lines()
	if len(lines) != 20 {
		t.Fatalf("ring holds %d lines, want 20: %q", len(lines), lines)
	}
	// The end of the spam, in order, then what the child said last.
	if !strings.HasPrefix(lines[0], "00082 ") || !strings.HasPrefix(lines[17], "00099 ") || !slices.Equal(lines[18:], []string{"no watchdog", "ready"}) {
		t.Errorf("ring = %q, want lines 00082..00099, then no watchdog, ready", lines)
	}
}

func TestLogFileRotates(t *testing.T) {
	dir := t.TempDir()
	const size = 4096
	h := start(t, Config{Dir: dir, LogFileSize: size, LogFile: "node.log"}, nil, "spam:200")
	h.waitLines("ready", 1)
	h.sigC <- syscall.SIGTERM
	if err := h.result(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node.log", "node.log.1"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == 0 || fi.Size() > size {
			t.Errorf("%s is %d bytes, want 1..%d", name, fi.Size(), size)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node.log.2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node.log.2 exists (%v), want only one rotated file", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "child exited") {
		t.Errorf("current log file lacks the supervisor's last event:\n%s", b)
	}
}

func TestFirstStartFailureIsAnError(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "missing"), Console: io.Discard, Signals: make(chan os.Signal)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	var ee *ExitError
	if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "starting child") {
		t.Errorf("Run = %v, want a start error", err)
	}
}

func TestConfigRejected(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative watchdog", Config{WatchdogTimeout: -1}},
		{"backoff range upside down", Config{InitialBackoff: time.Second, MaxBackoff: time.Millisecond}},
		{"log file is a path", Config{LogFile: "a/b.log"}},
		{"negative log size", Config{LogFileSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Path = "/bin/true"
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestNextBackoff(t *testing.T) {
	const (
		ms      = time.Millisecond
		initial = 100 * ms
		maxD    = 1000 * ms
		healthy = 10000 * ms
	)
	tests := []struct {
		prev, ran, want time.Duration
	}{
		{0, 0, initial},
		{initial, 5 * ms, 200 * ms},
		{400 * ms, 5 * ms, 800 * ms},
		{800 * ms, 5 * ms, maxD},
		{maxD, 5 * ms, maxD},
		{maxD, healthy, initial},
		{maxD, 2 * healthy, initial},
	}
	for _, tt := range tests {
		if got := nextBackoff(tt.prev, tt.ran, initial, maxD, healthy); got != tt.want {
			t.Errorf("nextBackoff(%v, ran %v) = %v, want %v", tt.prev, tt.ran, got, tt.want)
		}
	}
}

func TestChildEnviron(t *testing.T) {
	got := childEnviron(
		[]string{"PATH=/bin", EnvSupervised + "=1", EnvWatchdogFD + "=7", "HOME=/root"},
		[]string{"X=1"},
		[]string{EnvSupervised + "=1"},
	)
	want := []string{"PATH=/bin", "HOME=/root", "X=1", EnvSupervised + "=1"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnviron = %q, want %q", got, want)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("x"), 1},
		{&ExitError{Exit: Exit{Code: 78}}, 78},
		{&ExitError{Exit: Exit{Code: -1, Signal: "SIGTERM"}}, 143},
		{&ExitError{Exit: Exit{Code: -1, Signal: "bogus"}}, 1},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
