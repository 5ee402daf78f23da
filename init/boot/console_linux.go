package boot

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// consoles runs the console program on each console terminal and
// restarts it when it ends. Init's reaper tells it of its programs'
// exits (exited), since init reaps every process.
type consoles struct {
	log     *slog.Logger
	path    string // the twinpbx binary
	dataDir string
	dev     string // where the terminals are: "/dev/"
	// afterSetup runs once the wizard has stored its config.
	afterSetup func()
	// env is added to each program's environment (the time zone).
	env func() []string

	mu     sync.Mutex
	procs  map[int]chan unix.WaitStatus
	setups map[int]bool // running wizards
}

func newConsoles(log *slog.Logger, path, dataDir string, afterSetup func(), env func() []string) *consoles {
	return &consoles{log: log.With("component", "console"), path: path, dataDir: dataDir, dev: "/dev/", afterSetup: afterSetup, env: env,
		procs: map[int]chan unix.WaitStatus{}, setups: map[int]bool{}}
}

// start runs a console on every tty of ttys that exists until ctx ends.
func (c *consoles) start(ctx context.Context, ttys []string) {
	for _, tty := range ttys {
		go c.loop(ctx, tty)
	}
}

// exited is init's reaper telling of a process that ended.
func (c *consoles) exited(pid int, ws unix.WaitStatus) {
	c.mu.Lock()
	ch, ok := c.procs[pid]
	delete(c.procs, pid)
	delete(c.setups, pid)
	c.mu.Unlock()
	if ok {
		ch <- ws
	}
}

// spawn starts the console program on f as the leader of a new session
// with f as its controlling terminal. It holds the lock while starting,
// so the reaper cannot see the process end before it is registered.
func (c *consoles) spawn(f *os.File, args, env []string, setup bool) (int, <-chan unix.WaitStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := startNiced(ConsoleNice, func() (*os.Process, error) {
		return os.StartProcess(c.path, append([]string{c.path}, args...), &os.ProcAttr{
			Dir:   c.dataDir,
			Env:   env,
			Files: []*os.File{f, f, f},
			Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
		})
	})
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	c.procs[p.Pid] = ch
	if setup {
		c.setups[p.Pid] = true
	}
	return p.Pid, ch, nil
}

// ConsoleNice is the console programs' nice value. The PBX comes first
// on the box's CPU: a wizard or dashboard drawing its screen must not
// delay a SIP answer or the relay. It matters most at boot, when the
// consoles start the moment the PBX listens and, at the same priority,
// took the one vCPU of an emulated box for 0.2–0.4 s before the PBX
// answered its first request.
const ConsoleNice = 10

// startNiced runs start, which starts a process, on an OS thread of its
// own whose nice value is nice: the process inherits it from the thread
// that forks it, before it runs a single instruction, and so do all its
// threads (renicing it after the start would miss the threads a Go
// program makes at once). The thread gets its nice value back before
// startNiced returns; if it cannot, it is left locked and ends with its
// goroutine.
func startNiced(nice int, start func() (*os.Process, error)) (*os.Process, error) {
	type result struct {
		p   *os.Process
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		// The system call's priority is 20 minus the nice value.
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		niced := err == nil && unix.Setpriority(unix.PRIO_PROCESS, tid, nice) == nil
		p, err := start()
		if !niced || unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prio) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{p, err}
	}()
	r := <-done
	return r.p, r.err
}

// loop runs the console on tty again and again. A tty that cannot be
// opened (no such port on this board) ends it.
func (c *consoles) loop(ctx context.Context, tty string) {
	log := c.log.With("tty", tty)
	for ctx.Err() == nil {
		pending := SetupPending(c.dataDir)
		args, env := ConsoleProgram(tty, pending)
		env = append(env, c.env()...)
		f, err := os.OpenFile(c.dev+tty, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			log.Info("no console on this terminal", "err", err)
			return
		}
		started := time.Now()
		pid, done, err := c.spawn(f, args, env, pending)
		f.Close()
		if err != nil {
			log.Error("starting the console", "err", err)
			return
		}
		log.Info("console started", "pid", pid, "args", args)
		var ws unix.WaitStatus
		select {
		case ws = <-done:
		case <-ctx.Done():
			c.signal(pid, unix.SIGKILL)
			return
		}
		completed := pending && ws.Exited() && ws.ExitStatus() == 0 && SetupPending(c.dataDir)
		if completed {
			c.finishSetup(pid)
		}
		// A program that ends at once (a broken terminal) is not spun.
		if !completed && time.Since(started) < 2*time.Second {
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// finishSetup clears the setup marker once the wizard on one terminal
// stored its config, ends the wizards on the other terminals (they come
// back as dashboards) and applies the new config.
func (c *consoles) finishSetup(pid int) {
	c.log.Info("setup completed", "pid", pid)
	if err := setupDone(c.dataDir); err != nil {
		c.log.Error("setup completed, but its marker stays", "err", err)
	}
	c.mu.Lock()
	var others []int
	for p := range c.setups {
		others = append(others, p)
	}
	c.mu.Unlock()
	for _, p := range others {
		c.signal(p, unix.SIGTERM)
		go func() {
			time.Sleep(3 * time.Second) // grace for the terminal's restore, not a wait for a condition
			c.signal(p, unix.SIGKILL)
		}()
	}
	if c.afterSetup != nil {
		c.afterSetup()
	}
}

// signal sends sig to the session of a console program that has not
// been reaped yet (so its pid is not anyone else's).
func (c *consoles) signal(pid int, sig unix.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.procs[pid]; ok {
		_ = unix.Kill(-pid, sig)
	}
}
