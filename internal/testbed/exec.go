package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

// Exec runs a command in a namespace (with ip netns exec) and returns its
// combined output.
func (b *Bed) Exec(ctx context.Context, ns string, cmd ...string) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, errors.New("running in a namespace: no command")
	}
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, cmd...)...)
	out, err := c.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %q in %s: %w: %s", cmd, ns, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Process is a command started in a namespace by Start.
type Process struct {
	Cmd *exec.Cmd
	// NS is the namespace it runs in.
	NS string

	out  syncbuf.Buffer
	done chan struct{}
	err  error // set before done closes
}

// Start starts a command in a node's namespace. Its output is kept (see
// Output); it runs in its own process group and is killed when the bed is
// closed, when the node is powered off, or when the test binary dies.
func (b *Bed) Start(n Node, cmd ...string) (*Process, error) {
	return b.StartNS(b.NS(n), n, cmd...)
}

// StartNS starts a command in any namespace of the bed (for example the
// switch's), counted as the given node's for PowerOff.
func (b *Bed) StartNS(ns string, n Node, cmd ...string) (*Process, error) {
	if len(cmd) == 0 {
		return nil, errors.New("starting in a namespace: no command")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("starting in a namespace: the bed is closed")
	}
	p := &Process{NS: ns, done: make(chan struct{})}
	p.Cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, cmd...)...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the forking thread ends; Go ends threads only
	// when a goroutine exits locked, which InNS does only when it cannot
	// leave a namespace.
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %q in %s: %w", cmd, ns, err)
	}
	b.procs[p] = n
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
		b.mu.Lock()
		delete(b.procs, p)
		b.mu.Unlock()
	}()
	b.log.Debug("started", "ns", ns, "cmd", cmd, "pid", p.Cmd.Process.Pid)
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Output is what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends a signal to the process's group (SIGSTOP freezes a box's
// processes, SIGCONT resumes them).
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return errors.New("signalling a process: it has exited")
	default:
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		return fmt.Errorf("signalling process group %d: %w", p.Pid(), err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to grace for the exit, then kills.
func (p *Process) Stop(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
	return p.Wait()
}

// Kill kills the process group and waits for the exit.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// InNS runs fn on the calling goroutine's thread switched into the named
// namespace, then switches back. Sockets fn opens stay in that namespace
// after it returns, so a probe can open its socket here and use it from
// any goroutine. Goroutines fn starts do not run in the namespace.
func (b *Bed) InNS(ns string, fn func() error) error { return InNS(ns, fn) }

// InNS is Bed.InNS for any named namespace.
func InNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the current namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go ends it with the goroutine
		// rather than reuse a thread in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leaving namespace %s: %w", ns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func commandIn(ctx context.Context, ns string, cmd ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, cmd...)...)
}
