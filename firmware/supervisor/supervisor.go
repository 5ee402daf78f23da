// Package supervisor is the parent process of `twinpbx run`. It starts the
// same binary again as a child that does the real work, and keeps it
// running: it restarts the child with exponential backoff when it dies,
// runs cleanups the moment it dies (the appliance removes the VIP there, so
// a dead node does not keep answering ARP for it), hosts the simulated
// watchdog outside the child so that a hung child is caught too, forwards
// SIGTERM and SIGINT, and keeps the child's log lines in a ring buffer for
// the console and in a rotated log file in the data folder.
//
// The parent side is Run (or New and Supervisor.Run, which also give
// Supervisor.State and Supervisor.Lines to the control socket). The child
// side is Supervised, which tells `twinpbx run` it is the child, and
// ChildWatchdog, which gives it the hosted watchdog as a watchdog.Watchdog.
// On real boards the supervisor hosts no watchdog (Config.WatchdogTimeout
// zero) and the child opens /dev/watchdog itself.
//
// The child runs in its own process group, and every signal the supervisor
// sends goes to the whole group. The child is killed if the supervisor
// dies (PR_SET_PDEATHSIG).
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitConfigError is the exit status (EX_CONFIG) a child ends with when
// its configuration is wrong: restarting it would fail again the same way,
// so the supervisor does not, by default.
const ExitConfigError = 78

// watchdogRecordFile is written in the data folder when the hosted
// watchdog resets the child; the next child's start consumes it. Same name
// and meaning as the simulated watchdog's record in hw/watchdog.
const watchdogRecordFile = "watchdog-reset"

// exitsKept is how many exits State keeps.
const exitsKept = 16

// Config configures a Supervisor. The zero value of every field but Args
// has a useful default.
type Config struct {
	// Path is the child's executable; empty: this process's own
	// (os.Executable).
	Path string
	// Args are the child's arguments (without argv[0]), for example
	// {"run", "--data", dir}. The child finds EnvSupervised set.
	Args []string
	// Env is added to the supervisor's own environment for the child.
	Env []string
	// Dir is the data folder: the log file and the watchdog's reset
	// record go there. Empty: no log file, the record is kept in memory.
	Dir string

	// Stdin and Stdout are handed to the child; nil: the supervisor's
	// own. The child's stderr is read line by line into the ring buffer,
	// the log file and Console.
	Stdin  io.Reader
	Stdout io.Writer
	// Console receives every log line (the child's and the supervisor's);
	// nil: os.Stderr. io.Discard silences it.
	Console io.Writer

	// LogLines is the ring buffer's size in lines; zero: 1000.
	LogLines int
	// MaxLineBytes cuts longer lines; zero: 4096.
	MaxLineBytes int
	// LogFile is the log file's name in Dir; empty: "twinpbx.log".
	LogFile string
	// LogFileSize is the size at which the log file is rotated; zero:
	// 4 MiB.
	LogFileSize int64
	// LogFilesKept is how many rotated files (LogFile.1, ...) are kept
	// besides the current one; zero: 1.
	LogFilesKept int

	// InitialBackoff is the delay before restarting a child that died;
	// zero: 500 ms. It doubles with each quick death up to MaxBackoff
	// (zero: 30 s), and falls back to InitialBackoff after a child that
	// ran for HealthyAfter (zero: 1 min).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	HealthyAfter   time.Duration
	// NoRestart lists exit codes after which the supervisor stops
	// instead of restarting; nil: {ExitConfigError}. Give an empty
	// non-nil slice to restart after any code.
	NoRestart []int

	// WatchdogTimeout > 0 makes the supervisor host a watchdog for the
	// child (the simulated board): once the child has armed it
	// (ChildWatchdog), a child that does not kick it within the timeout
	// is killed, with its whole process group, and restarted, and the
	// next child's BootStatus reports the reset. Zero: none (real boards
	// open /dev/watchdog in the child).
	WatchdogTimeout time.Duration
	// StopTimeout bounds the wait for the child after a stop signal was
	// forwarded; then it is killed. Zero: 10 s.
	StopTimeout time.Duration

	// OnChildExit runs the moment a child has died, before anything else
	// (before the restart, and on the final exit too). exitCode is -1
	// when a signal ended the child, and signal then names it ("SIGKILL",
	// also after a watchdog reset). It runs on the supervisor's goroutine
	// and delays the restart: keep it short. A panic in it is logged.
	OnChildExit func(exitCode int, signal string)

	// Foreground hands the terminal to the child when Stdin is the
	// supervisor's controlling terminal and the supervisor is in its
	// foreground (`twinpbx run` in a shell, with the console on the
	// terminal): the child's process group becomes the terminal's
	// foreground group, so it can read the terminal and set raw mode, and
	// the operator's Ctrl-C and Ctrl-\ go to the child alone. The
	// supervisor cannot see those, so in this mode a child that exits
	// with status 0 or is ended by SIGINT or SIGQUIT counts as stopped on
	// purpose: the supervisor stops too. Without a terminal (on the box,
	// under init) the option does nothing.
	Foreground bool

	// Signals, when not nil, is where stop signals come from (tests).
	// Nil: Run subscribes to SIGTERM and SIGINT itself. Each signal
	// received is forwarded to the child; cancelling Run's context
	// forwards SIGTERM.
	Signals <-chan os.Signal
	// Logger receives the supervisor's own events; nil: a text logger
	// writing into the ring buffer, the log file and Console, like the
	// child's lines.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Path == "" {
		p, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the child's executable: %w", err)
		}
		c.Path = p
	}
	if c.Stdin == nil {
		c.Stdin = os.Stdin
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Console == nil {
		c.Console = os.Stderr
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.LogLines, 1000)
	def(&c.MaxLineBytes, 4096)
	def(&c.LogFilesKept, 1)
	if c.LogFile == "" {
		c.LogFile = "twinpbx.log"
	}
	if c.LogFileSize == 0 {
		c.LogFileSize = 4 << 20
	}
	defDur(&c.InitialBackoff, 500*time.Millisecond)
	defDur(&c.MaxBackoff, 30*time.Second)
	defDur(&c.HealthyAfter, time.Minute)
	defDur(&c.StopTimeout, 10*time.Second)
	if c.NoRestart == nil {
		c.NoRestart = []int{ExitConfigError}
	}
	switch {
	case c.LogLines < 0, c.MaxLineBytes < 0, c.LogFilesKept < 0, c.LogFileSize < 0:
		return errors.New("log sizes must not be negative")
	case c.InitialBackoff < 0, c.MaxBackoff < c.InitialBackoff, c.HealthyAfter < 0:
		return fmt.Errorf("backoff %v..%v (healthy after %v) is not a range", c.InitialBackoff, c.MaxBackoff, c.HealthyAfter)
	case c.WatchdogTimeout < 0, c.StopTimeout < 0:
		return errors.New("timeouts must not be negative")
	case strings.ContainsRune(c.LogFile, os.PathSeparator):
		return fmt.Errorf("log file %q must be a name, not a path", c.LogFile)
	}
	return nil
}

// Supervisor runs one child at a time. Its State and Lines may be read
// from any goroutine while Run runs.
type Supervisor struct {
	cfg  Config
	log  *slog.Logger
	sink *sink

	// after waits out a backoff; tests replace it.
	after func(time.Duration) <-chan time.Time

	// ttyFD is the terminal handed to each child, -1 for none.
	ttyFD int

	mu           sync.Mutex
	st           State
	running      bool
	pendingReset bool // the last child was reset by the watchdog
}

// New checks cfg and returns a Supervisor that has not started anything.
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("configuring supervisor: %w", err)
	}
	s := &Supervisor{
		cfg:   cfg,
		sink:  &sink{ring: newRing(cfg.LogLines)},
		after: time.After,
		ttyFD: -1,
	}
	s.log = cfg.Logger
	if s.log == nil {
		w := &lockedWriter{w: s.sink.writer(cfg.MaxLineBytes)}
		s.log = slog.New(slog.NewTextHandler(w, nil)).With("component", "supervisor")
	}
	return s, nil
}

// Run starts a Supervisor for cfg and runs it until it stops; see
// Supervisor.Run.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// State returns a snapshot of the supervisor's state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Exits = slices.Clone(s.st.Exits)
	return st
}

// Lines returns the last Config.LogLines log lines, oldest first: the
// child's stderr and the supervisor's own events (with the default
// Logger).
func (s *Supervisor) Lines() []string { return s.sink.lines() }

// LinesSince returns the lines logged after the first n since the
// supervisor was made (as many of them as the ring still holds), and the
// n to pass next time: a console follows the log by polling
// LinesSince(next), starting from 0.
func (s *Supervisor) LinesSince(n uint64) (lines []string, next uint64) {
	return s.sink.since(n)
}

func (s *Supervisor) update(f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

// Run starts the child and keeps it running until a stop signal arrives,
// ctx is cancelled, or the child exits with a code in Config.NoRestart.
// After a stop it forwards the signal, waits for the child (at most
// Config.StopTimeout, then kills it) and returns nil if the child exited
// with status 0, an *ExitError otherwise (ExitCode maps it to the status
// the supervisor should exit with). It returns an error without an
// *ExitError when the first child cannot be started at all. A child that
// exits on its own, even with status 0, is restarted. Run may be called
// once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("supervisor is already running")
	}
	s.running = true
	s.mu.Unlock()

	sigC := s.cfg.Signals
	if sigC == nil {
		c := make(chan os.Signal, 4)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(c)
		sigC = c
	}
	if s.cfg.Console != io.Discard {
		c := newConsole(s.cfg.Console)
		s.sink.mu.Lock()
		s.sink.console = c
		s.sink.mu.Unlock()
		defer func() {
			s.sink.mu.Lock()
			s.sink.console = nil
			s.sink.mu.Unlock()
			c.close(2 * time.Second)
		}()
	}
	if s.cfg.Dir != "" {
		f, err := openRotating(filepath.Join(s.cfg.Dir, s.cfg.LogFile), s.cfg.LogFileSize, s.cfg.LogFilesKept)
		if err != nil {
			return fmt.Errorf("starting supervisor: %w", err)
		}
		s.sink.mu.Lock()
		s.sink.file = f
		s.sink.mu.Unlock()
		defer func() {
			s.sink.mu.Lock()
			defer s.sink.mu.Unlock()
			_ = s.sink.file.Close()
			s.sink.file = nil
		}()
	}

	if s.cfg.Foreground {
		if fd, ok := foregroundTTY(s.cfg.Stdin); ok {
			s.ttyFD = fd
			defer s.reclaimTTY()
		} else {
			s.log.Info("not in the foreground of a terminal: the child runs in the background")
		}
	}

	var delay time.Duration
	for {
		if ctx.Err() != nil || s.State().Stopping {
			return nil
		}
		ex, err := s.runChild(ctx, sigC)
		if err != nil {
			if s.State().Starts == 0 {
				return err
			}
			s.log.Error("starting child failed", "err", err)
			ex = Exit{Code: -1, Reason: err.Error()}
		} else if s.State().Stopping {
			if ex.Code == 0 {
				s.log.Info("child stopped", "pid", ex.PID)
				return nil
			}
			s.log.Info("child stopped", "pid", ex.PID, "reason", ex.Reason)
			return &ExitError{Exit: ex}
		} else if s.ttyFD >= 0 && (ex.Code == 0 || ex.Signal == "SIGINT" || ex.Signal == "SIGQUIT") {
			s.update(func(st *State) { st.Stopping = true })
			s.log.Info("child on the terminal stopped; stopping", "pid", ex.PID, "reason", ex.Reason)
			if ex.Code == 0 {
				return nil
			}
			return &ExitError{Exit: ex}
		} else if ex.Code >= 0 && slices.Contains(s.cfg.NoRestart, ex.Code) {
			e := &ExitError{Exit: ex, NoRestart: true}
			s.log.Error("child asked not to be restarted", "pid", ex.PID, "reason", ex.Reason)
			return e
		}

		delay = nextBackoff(delay, ex.Ran, s.cfg.InitialBackoff, s.cfg.MaxBackoff, s.cfg.HealthyAfter)
		s.log.Warn("restarting child", "reason", ex.Reason, "in", delay)
		s.update(func(st *State) { st.Backoff = delay })
		if !s.waitBackoff(ctx, sigC, delay) {
			s.log.Info("stopped while waiting to restart the child")
			return nil
		}
		s.update(func(st *State) { st.Backoff = 0 })
	}
}

// nextBackoff is the delay before the next start, after a child that ran
// for ran and a previous delay of prev (zero before the first restart).
func nextBackoff(prev, ran, initial, maxDelay, healthyAfter time.Duration) time.Duration {
	if prev == 0 || ran >= healthyAfter {
		return initial
	}
	return min(2*prev, maxDelay)
}

// waitBackoff waits d; it returns false when a stop came first.
func (s *Supervisor) waitBackoff(ctx context.Context, sigC <-chan os.Signal, d time.Duration) bool {
	select {
	case <-s.after(d):
		return true
	case <-ctx.Done():
	case sig := <-sigC:
		s.log.Info("received signal while no child runs", "signal", sig)
	}
	s.update(func(st *State) { st.Stopping = true; st.Backoff = 0 })
	return false
}

// childEnviron is the supervisor's environment without our variables, then
// extra, then ours.
func childEnviron(base, extra, ours []string) []string {
	mine := []string{EnvSupervised, EnvWatchdogFD, EnvWatchdogTimeout, EnvWatchdogBoot}
	env := make([]string, 0, len(base)+len(extra)+len(ours))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(mine, k) {
			env = append(env, kv)
		}
	}
	env = append(env, extra...)
	return append(env, ours...)
}

// takeResetRecord reports, and clears, the record of a watchdog reset of
// the previous child.
func (s *Supervisor) takeResetRecord() bool {
	s.mu.Lock()
	reset := s.pendingReset
	s.pendingReset = false
	s.mu.Unlock()
	if s.cfg.Dir == "" {
		return reset
	}
	path := filepath.Join(s.cfg.Dir, watchdogRecordFile)
	err := os.Remove(path)
	switch {
	case err == nil:
		return true
	case !errors.Is(err, os.ErrNotExist):
		s.log.Error("clearing the watchdog reset record", "err", err)
	}
	return reset
}

func (s *Supervisor) recordReset(at time.Time) {
	s.mu.Lock()
	s.pendingReset = true
	s.mu.Unlock()
	if s.cfg.Dir == "" {
		return
	}
	path := filepath.Join(s.cfg.Dir, watchdogRecordFile)
	data := fmt.Sprintf("watchdog reset at %s\n", at.UTC().Format(time.RFC3339Nano))
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		s.log.Error("recording the watchdog reset", "err", err)
	}
}

// signalGroup sends sig to the child's process group, ignoring a group
// that is already gone.
func (s *Supervisor) signalGroup(pid int, sig syscall.Signal) {
	if err := unix.Kill(-pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		s.log.Error("signalling child", "pid", pid, "signal", unix.SignalName(sig), "err", err)
	}
}

// runChild starts one child and returns how it ended. It returns an error
// only when the child could not be started.
func (s *Supervisor) runChild(ctx context.Context, sigC <-chan os.Signal) (Exit, error) {
	cmd := exec.Command(s.cfg.Path, s.cfg.Args...)
	cmd.Stdin, cmd.Stdout = s.cfg.Stdin, s.cfg.Stdout
	stderr := s.sink.writer(s.cfg.MaxLineBytes)
	cmd.Stderr = stderr
	// A grandchild that left the group and kept stderr open must not
	// hold up the restart.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.ttyFD >= 0 {
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = s.ttyFD
	}

	ours := []string{EnvSupervised + "=1"}
	var kicks *os.File
	if s.cfg.WatchdogTimeout > 0 {
		parent, child, err := kickSocket()
		if err != nil {
			return Exit{}, fmt.Errorf("starting child: %w", err)
		}
		defer child.Close()
		kicks = parent
		defer kicks.Close()
		cmd.ExtraFiles = []*os.File{child}
		boot := ""
		if s.takeResetRecord() {
			boot = "reset"
		}
		ours = append(ours, EnvWatchdogFD+"=3", EnvWatchdogTimeout+"="+s.cfg.WatchdogTimeout.String(), EnvWatchdogBoot+"="+boot)
	}
	cmd.Env = childEnviron(os.Environ(), s.cfg.Env, ours)

	if err := cmd.Start(); err != nil {
		return Exit{}, fmt.Errorf("starting child %s: %w", s.cfg.Path, err)
	}
	for _, f := range cmd.ExtraFiles {
		_ = f.Close() // the child has its copy; EOF comes when it dies
	}
	pid := cmd.Process.Pid
	started := time.Now()
	s.update(func(st *State) {
		st.PID, st.Started = pid, started
		st.WatchdogArmed, st.LastKick = false, time.Time{}
		st.Starts++
		st.Restarts = st.Starts - 1
	})
	s.log.Info("child started", "pid", pid, "path", s.cfg.Path, "args", s.cfg.Args)

	waitC := make(chan error, 1)
	go func() { waitC <- cmd.Wait() }()

	done := make(chan struct{})
	defer close(done)
	var kickC <-chan byte
	if kicks != nil {
		kickC = readKicks(kicks, done)
	}

	var (
		wdTimer   *time.Timer
		wdC       <-chan time.Time
		stopC     <-chan time.Time
		ctxDone   = ctx.Done()
		stopping  bool
		wdReset   bool
		waitErr   error
		forwarded bool
	)
	stopTimer := func() {
		if wdTimer != nil {
			wdTimer.Stop()
		}
	}
	defer stopTimer()
	stop := func(sig syscall.Signal) {
		if !stopping {
			stopping = true
			s.update(func(st *State) { st.Stopping = true })
			stopC = time.After(s.cfg.StopTimeout)
		}
		forwarded = true
		s.log.Info("stopping child", "pid", pid, "signal", unix.SignalName(sig))
		s.signalGroup(pid, sig)
		// A stopped child must run to act on the signal.
		s.signalGroup(pid, syscall.SIGCONT)
	}
wait:
	for {
		select {
		case waitErr = <-waitC:
			break wait
		case m, ok := <-kickC:
			if !ok {
				kickC = nil
				continue
			}
			switch m {
			case msgOpen, msgKick:
				if wdTimer == nil {
					wdTimer = time.NewTimer(s.cfg.WatchdogTimeout)
				} else {
					wdTimer.Reset(s.cfg.WatchdogTimeout)
				}
				wdC = wdTimer.C
				now := time.Now()
				s.update(func(st *State) { st.WatchdogArmed, st.LastKick = true, now })
				if m == msgOpen {
					s.log.Info("child armed the watchdog", "pid", pid, "timeout", s.cfg.WatchdogTimeout)
				}
			case msgClose:
				stopTimer()
				wdC = nil
				s.update(func(st *State) { st.WatchdogArmed = false })
				s.log.Info("child disarmed the watchdog", "pid", pid)
			}
		case <-wdC:
			wdC = nil
			wdReset = true
			now := time.Now()
			s.log.Error("watchdog reset: no kick in time, killing the child", "pid", pid, "timeout", s.cfg.WatchdogTimeout)
			s.recordReset(now)
			s.signalGroup(pid, syscall.SIGKILL)
		case sig := <-sigC:
			ss, ok := sig.(syscall.Signal)
			if !ok {
				ss = syscall.SIGTERM
			}
			stop(ss)
		case <-ctxDone:
			ctxDone = nil
			if !forwarded {
				stop(syscall.SIGTERM)
			}
		case <-stopC:
			stopC = nil
			s.log.Error("child did not stop in time, killing it", "pid", pid, "timeout", s.cfg.StopTimeout)
			s.signalGroup(pid, syscall.SIGKILL)
		}
	}
	// Messages the child sent just before it died, such as the magic
	// close of a deliberate shutdown, may still be queued.
	if kickC != nil {
		drain := time.After(100 * time.Millisecond)
	drained:
		for {
			select {
			case m, ok := <-kickC:
				if !ok {
					break drained
				}
				if m == msgClose {
					s.log.Info("child disarmed the watchdog", "pid", pid)
				}
			case <-drain:
				break drained
			}
		}
	}
	// Whatever the child left in its group goes with it.
	s.signalGroup(pid, syscall.SIGKILL)
	if s.ttyFD >= 0 {
		// Take the terminal back, so that Ctrl-C during the backoff
		// reaches the supervisor.
		s.reclaimTTY()
	}
	stderr.Flush()

	ex := exitOf(pid, started, cmd.ProcessState, waitErr, wdReset, s.cfg.WatchdogTimeout)
	s.update(func(st *State) {
		st.PID, st.Started = 0, time.Time{}
		st.WatchdogArmed = false
		if wdReset {
			st.WatchdogResets++
		}
		st.Exits = append(st.Exits, ex)
		if len(st.Exits) > exitsKept {
			st.Exits = slices.Delete(st.Exits, 0, len(st.Exits)-exitsKept)
		}
	})
	s.log.Info("child exited", "pid", pid, "reason", ex.Reason, "ran", ex.Ran.Round(time.Millisecond))
	s.childExited(ex)
	return ex, nil
}

// childExited runs the OnChildExit hook, surviving its panics.
func (s *Supervisor) childExited(ex Exit) {
	if s.cfg.OnChildExit == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("child exit cleanup panicked", "panic", r)
		}
	}()
	s.cfg.OnChildExit(ex.Code, ex.Signal)
}

func exitOf(pid int, started time.Time, ps *os.ProcessState, waitErr error, wdReset bool, wdTimeout time.Duration) Exit {
	now := time.Now()
	ex := Exit{PID: pid, At: now, Ran: now.Sub(started), Code: -1, WatchdogReset: wdReset}
	if ps == nil {
		ex.Reason = fmt.Sprintf("wait failed: %v", waitErr)
		return ex
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		ex.Code = ps.ExitCode()
	case ws.Signaled():
		ex.Signal = unix.SignalName(ws.Signal())
		if ex.Signal == "" {
			ex.Signal = fmt.Sprintf("signal %d", int(ws.Signal()))
		}
	default:
		ex.Code = ws.ExitStatus()
	}
	switch {
	case wdReset:
		ex.Reason = fmt.Sprintf("reset by the watchdog (no kick for %v)", wdTimeout)
	case ex.Signal != "":
		ex.Reason = "killed by " + ex.Signal
	case ex.Code == ExitConfigError:
		ex.Reason = fmt.Sprintf("exited with code %d (configuration error)", ex.Code)
	default:
		ex.Reason = fmt.Sprintf("exited with code %d", ex.Code)
	}
	return ex
}

// foregroundTTY returns stdin's descriptor when it is a terminal whose
// foreground process group is ours.
func foregroundTTY(stdin io.Reader) (int, bool) {
	f, ok := stdin.(*os.File)
	if !ok {
		return -1, false
	}
	fd := int(f.Fd())
	pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || pgrp != unix.Getpgrp() {
		return -1, false
	}
	return fd, true
}

// reclaimTTY makes the supervisor's process group the terminal's
// foreground group again. A background group asking for the terminal gets
// SIGTTOU, so it is ignored for the moment.
func (s *Supervisor) reclaimTTY() {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	if err := unix.IoctlSetPointerInt(s.ttyFD, unix.TIOCSPGRP, unix.Getpgrp()); err != nil {
		s.log.Error("taking back the terminal", "err", err)
	}
}

func signalNumber(name string) int {
	return int(unix.SignalNum(name))
}

// kickSocket returns the two ends of the kick channel: the parent's,
// non-blocking so that closing it ends a pending read, and the child's.
func kickSocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating watchdog socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
		return nil, nil, fmt.Errorf("creating watchdog socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "watchdog-parent"), os.NewFile(uintptr(fds[1]), "watchdog-child"), nil
}

// readKicks delivers each message byte read from f until f ends or done is
// closed.
func readKicks(f *os.File, done <-chan struct{}) <-chan byte {
	c := make(chan byte)
	go func() {
		defer close(c)
		buf := make([]byte, 64)
		for {
			n, err := f.Read(buf)
			for _, b := range buf[:n] {
				select {
				case c <- b:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}
