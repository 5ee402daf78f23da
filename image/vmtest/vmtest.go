// Package vmtest boots the twinpbx firmware image in QEMU for tests: one
// machine with the qemu board's i6300esb watchdog and a virtio NIC on
// QEMU's user network, the guest's SIP port forwarded to a host port,
// and the serial console captured. Its own tests (part of go test ./...)
// build the image, check that the box answers SIP and that a hung box is
// reset by its watchdog.
package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/image/build"
)

// QEMU is the emulator the machines run in.
const QEMU = "qemu-system-x86_64"

// Config is one machine.
type Config struct {
	// Image is the folder made by image/build (vmlinux, initramfs.cpio.xz).
	Image string
	// Accel is QEMU's accelerator: "tcg" (KVM does not work on the CI
	// machines).
	Accel string
	// MemoryMB is the guest's memory.
	MemoryMB int
	// Append is added to the kernel command line.
	Append string
	// SIPPort is the host UDP port (on 127.0.0.1) forwarded to the
	// guest's 5060.
	SIPPort int
	// WatchdogAction is what QEMU does when the watchdog fires: "reset"
	// (a real box) or "poweroff" (QEMU exits: what a test waits for).
	WatchdogAction string
	// Nice runs QEMU under nice -n 19.
	Nice bool
	// Input, when set, is typed on the serial console (QEMU's stdin).
	Input io.Reader
	// Extra are more QEMU arguments (a data disk).
	Extra []string
	// Firmware, when set, is a UEFI firmware (OVMF) that boots the disk
	// in Extra as a board does: no -kernel, -initrd or -append.
	Firmware string
	// FirmwareVars, when set with Firmware, is a writable copy of the
	// firmware's variable store (its enrolled Secure Boot keys): the two
	// are flash chips, as a Secure Boot OVMF needs them, with SMM on.
	FirmwareVars string
	// Initrd, when set, replaces the image's initramfs.cpio.xz (an
	// uncompressed copy boots faster under TCG: see Uncompressed).
	Initrd string
	// NoUserNet leaves out the NIC on QEMU's user network (and SIPPort):
	// the machine's NICs are all in Extra.
	NoUserNet bool
}

// GuestIP is the guest's address on QEMU's user network.
const GuestIP = "10.0.2.15"

// Args are QEMU's arguments for c. The guest does not reboot: a reboot
// (init's answer to a fatal error, or a kernel panic) ends QEMU, so a
// test sees it. The CPU is TCG's "max" model: it has RDRAND, so the
// kernel's random number generator is ready at once instead of about a
// second after init first asks it (as on a board whose CPU has RDRAND).
func Args(c Config) []string {
	kernel := KernelCmdline(c.Append)
	machine := "q35"
	if c.Firmware != "" && c.FirmwareVars != "" {
		machine += ",smm=on"
	}
	args := []string{
		"-accel", c.Accel, "-cpu", "max", "-machine", machine, "-m", strconv.Itoa(c.MemoryMB),
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-device", "i6300esb", "-action", "watchdog=" + c.WatchdogAction,
	}
	if !c.NoUserNet {
		args = append(args,
			"-netdev", fmt.Sprintf("user,id=lan,hostfwd=udp:127.0.0.1:%d-:5060", c.SIPPort),
			"-device", "virtio-net-pci,netdev=lan")
	}
	switch {
	case c.Firmware != "" && c.FirmwareVars != "":
		args = append(args, firmwareFlash(c.Firmware, c.FirmwareVars)...)
	case c.Firmware != "":
		args = append(args, "-bios", c.Firmware)
	default:
		initrd := c.Initrd
		if initrd == "" {
			initrd = filepath.Join(c.Image, build.Initramfs)
		}
		args = append(args, "-kernel", filepath.Join(c.Image, build.Vmlinux),
			"-initrd", initrd, "-append", kernel)
	}
	return append(args, c.Extra...)
}

// firmwareFlash are QEMU's arguments for a UEFI firmware whose code and
// variable store are flash chips, the code read-only and only writable
// from SMM, as Secure Boot needs (a guest OS must not rewrite db).
func firmwareFlash(code, vars string) []string {
	return []string{
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}
}

// KernelCmdline is the guest's kernel command line with extra appended.
func KernelCmdline(extra string) string {
	kernel := "console=ttyS0,115200 panic=-1 twinpbx.ip=" + GuestIP + "/24 twinpbx.gw=10.0.2.2"
	if extra != "" {
		kernel += " " + extra
	}
	return kernel
}

// Machine is a running QEMU.
type Machine struct {
	// Started is when QEMU was started.
	Started time.Time
	cmd     *exec.Cmd
	console *console
	done    chan struct{}
	err     error // QEMU's exit, once done is closed
}

// Start starts QEMU. The caller must Kill the machine (t.Cleanup).
func Start(c Config) (*Machine, error) {
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 512
	}
	if c.WatchdogAction == "" {
		c.WatchdogAction = "reset"
	}
	name, args := QEMU, Args(c)
	if c.Nice {
		name, args = "nice", append([]string{"-n", "19", QEMU}, args...)
	}
	m := &Machine{console: newConsole(), done: make(chan struct{})}
	m.cmd = exec.Command(name, args...)
	m.cmd.Stdout = m.console
	m.cmd.Stderr = m.console
	m.cmd.Stdin = c.Input
	// A test binary killed (go test's timeout) takes its machines with
	// it instead of leaving them to eat the CPU.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.Started = time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	return m, nil
}

// Console is everything the machine printed so far.
func (m *Machine) Console() string { return m.console.String() }

// WaitConsole waits until the console shows s and returns how long after
// QEMU's start it did.
func (m *Machine) WaitConsole(ctx context.Context, s string) (time.Duration, error) {
	for {
		ch := m.console.changed()
		if i := strings.Index(m.console.String(), s); i >= 0 {
			return m.console.seenAt(i).Sub(m.Started), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q on the console: %w", s, ctx.Err())
		case <-m.done:
			if !strings.Contains(m.console.String(), s) {
				return 0, fmt.Errorf("QEMU ended (%v) before the console showed %q", m.err, s)
			}
		case <-ch:
		}
	}
}

// Wait waits until QEMU ends and returns its exit error.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU to end: %w", ctx.Err())
	case <-m.done:
		return m.err
	}
}

// Done is closed when QEMU has ended.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Kill ends QEMU if it still runs and waits for it.
func (m *Machine) Kill() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Kill()
	<-m.done
}

// console collects the serial output and when each byte arrived.
type console struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marks  []mark // offset → time, one per write
	notify chan struct{}
}

type mark struct {
	off int
	at  time.Time
}

func newConsole() *console { return &console{notify: make(chan struct{})} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks = append(c.marks, mark{off: c.buf.Len(), at: time.Now()})
	c.buf.Write(p)
	close(c.notify)
	c.notify = make(chan struct{})
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *console) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notify
}

// seenAt is when the byte at off arrived.
func (c *console) seenAt(off int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := time.Time{}
	for _, m := range c.marks {
		if m.off > off {
			break
		}
		at = m.at
	}
	return at
}

// OptionsResend is how long Options waits for an answer before it asks
// again. A request sent before the box listens is lost, so this is also
// how late Options may see a box that has just begun to listen: the boot
// benchmark's resolution (it was 300 ms, which added 0.15 s on average
// to every boot measured).
const OptionsResend = 50 * time.Millisecond

// Options sends SIP OPTIONS over UDP to addr until an answer comes or ctx
// ends, and returns the answer's Server header.
func Options(ctx context.Context, addr string) (string, error) {
	return OptionsFrom(ctx, net.IPv4(127, 0, 0, 1), addr)
}

// OptionsFrom is Options sent from the local address laddr.
func OptionsFrom(ctx context.Context, laddr net.IP, addr string) (string, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", fmt.Errorf("SIP OPTIONS to %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: laddr})
	if err != nil {
		return "", fmt.Errorf("SIP OPTIONS to %s: %w", addr, err)
	}
	defer conn.Close()
	callID := token()
	req := OptionsRequest(conn.LocalAddr().String(), addr, callID)
	buf := make([]byte, 65535)
	var lastErr error
	for ctx.Err() == nil {
		if _, err := conn.WriteToUDP(req, raddr); err != nil {
			lastErr = err
		}
		_ = conn.SetReadDeadline(time.Now().Add(OptionsResend))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			continue // no answer yet: ask again
		}
		server, err := AnswerServer(buf[:n], callID)
		if err != nil {
			lastErr = err
			continue
		}
		return server, nil
	}
	return "", fmt.Errorf("SIP OPTIONS to %s: no answer (%v): %w", addr, lastErr, ctx.Err())
}

// OptionsRequest is an OPTIONS request from laddr to target (host:port).
// rport asks for the answer to come back to the port it was sent from,
// whatever NAT QEMU's user network does.
func OptionsRequest(laddr, target, callID string) []byte {
	return []byte("OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + laddr + ";rport;branch=z9hG4bK" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:vmtest@" + laddr + ">;tag=" + callID[:8] + "\r\n" +
		"To: <sip:" + target + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// AnswerServer checks that data is a final answer to the OPTIONS request
// with callID and returns its Server header.
func AnswerServer(data []byte, callID string) (string, error) {
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return "", fmt.Errorf("parsing the answer: %w", err)
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		return "", errors.New("answer is a request, not a response")
	}
	if id := res.CallID(); id == nil || id.Value() != callID {
		return "", errors.New("answer to another request")
	}
	if res.StatusCode < 200 {
		return "", fmt.Errorf("provisional answer %d", res.StatusCode)
	}
	h := res.GetHeader("Server")
	if h == nil {
		return "", fmt.Errorf("answer %d has no Server header", res.StatusCode)
	}
	return h.Value(), nil
}

func token() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
