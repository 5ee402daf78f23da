package watchdog

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultDevice is where Linux exposes the first watchdog.
const DefaultDevice = "/dev/watchdog"

// syscalls is the seam between the driver and the kernel, so the ioctl logic
// is unit tested without a device.
type syscalls interface {
	open(path string) (int, error)
	close(fd int) error
	write(fd int, b []byte) (int, error)
	keepalive(fd int) error
	setTimeout(fd int, seconds int) (int, error)
	getTimeout(fd int) (int, error)
	bootStatus(fd int) (uint32, error)
	info(fd int) (*unix.WatchdogInfo, error)
}

type realSyscalls struct{}

func (realSyscalls) open(path string) (int, error) {
	return unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
}

func (realSyscalls) close(fd int) error { return unix.Close(fd) }

func (realSyscalls) write(fd int, b []byte) (int, error) { return unix.Write(fd, b) }

func (realSyscalls) keepalive(fd int) error { return unix.IoctlWatchdogKeepalive(fd) }

// setTimeout passes the timeout by pointer, as WDIOC_SETTIMEOUT wants, and
// returns the value the driver wrote back: the timeout actually in force.
func (realSyscalls) setTimeout(fd int, seconds int) (int, error) {
	v := int32(seconds)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.WDIOC_SETTIMEOUT), uintptr(unsafe.Pointer(&v)))
	if errno != 0 {
		return 0, errno
	}
	return int(v), nil
}

func (realSyscalls) getTimeout(fd int) (int, error) {
	return unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
}

func (realSyscalls) bootStatus(fd int) (uint32, error) {
	v, err := unix.IoctlGetInt(fd, unix.WDIOC_GETBOOTSTATUS)
	return uint32(v), err
}

func (realSyscalls) info(fd int) (*unix.WatchdogInfo, error) {
	return unix.IoctlGetWatchdogInfo(fd)
}

// Device is a Linux watchdog character device (/dev/watchdogN).
type Device struct {
	sys      syscalls
	path     string
	identity string
	options  uint32

	mu      sync.Mutex
	fd      int
	timeout time.Duration
	closed  bool
}

var _ Watchdog = (*Device)(nil)

// Open opens and thereby arms the watchdog at path. A timeout above zero is
// asked of the driver, which may round it (Timeout reports what it set);
// zero, or a driver whose timeout is fixed, keeps the driver's timeout. Only one process can hold a
// watchdog open: a second Open fails with an error wrapping unix.EBUSY.
func Open(path string, timeout time.Duration) (*Device, error) {
	return open(realSyscalls{}, path, timeout)
}

func open(sys syscalls, path string, timeout time.Duration) (*Device, error) {
	if timeout < 0 {
		return nil, fmt.Errorf("opening watchdog %s: negative timeout %v", path, timeout)
	}
	fd, err := sys.open(path)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("opening watchdog %s: held by another process: %w", path, err)
		}
		return nil, fmt.Errorf("opening watchdog %s: %w", path, err)
	}
	d := &Device{sys: sys, path: path, fd: fd}
	if err := d.setup(timeout); err != nil {
		// Giving up at start-up is deliberate, not a crash: disarm, or
		// the node would be reset for a watchdog nobody can kick.
		_ = d.Close()
		return nil, fmt.Errorf("setting up watchdog %s: %w", path, err)
	}
	return d, nil
}

func (d *Device) setup(timeout time.Duration) error {
	d.identity = d.path
	if info, err := d.sys.info(d.fd); err == nil {
		d.options = info.Options
		if id := cString(info.Identity[:]); id != "" {
			d.identity = id
		}
	} else if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("reading support info: %w", err)
	}
	if timeout > 0 {
		secs := int((timeout + time.Second - 1) / time.Second)
		got, err := d.sys.setTimeout(d.fd, secs)
		switch {
		case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP):
			// A fixed-timeout watchdog: keep its timeout, which
			// Timeout reports, so the cluster waits the right time.
		case err != nil:
			return fmt.Errorf("setting timeout to %ds: %w", secs, err)
		case got <= 0:
			return fmt.Errorf("driver set a timeout of %ds when asked for %ds", got, secs)
		default:
			d.timeout = time.Duration(got) * time.Second
			return nil
		}
	}
	got, err := d.sys.getTimeout(d.fd)
	if err != nil {
		return fmt.Errorf("reading timeout: %w", err)
	}
	if got <= 0 {
		return fmt.Errorf("driver reports a timeout of %ds", got)
	}
	d.timeout = time.Duration(got) * time.Second
	return nil
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

// Kick restarts the countdown.
func (d *Device) Kick() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err := d.sys.keepalive(d.fd)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		// Drivers without WDIOF_KEEPALIVEPING take any write as a kick
		// (any byte but 'V', which would prime the magic close).
		_, err = d.sys.write(d.fd, []byte{0})
	}
	if err != nil {
		return fmt.Errorf("kicking watchdog %s: %w", d.path, err)
	}
	return nil
}

// Timeout is the countdown the driver actually set.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Identity is the driver's identity string (WDIOC_GETSUPPORT), or the path.
func (d *Device) Identity() string { return d.identity }

// Options are the WDIOF_* capability bits the driver reported.
func (d *Device) Options() uint32 { return d.options }

// BootStatus reports WDIOC_GETBOOTSTATUS.
func (d *Device) BootStatus() (BootStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return BootStatus{}, ErrClosed
	}
	flags, err := d.sys.bootStatus(d.fd)
	if err != nil {
		return BootStatus{}, fmt.Errorf("reading boot status of watchdog %s: %w", d.path, err)
	}
	return BootStatus{WatchdogReset: flags&unix.WDIOF_CARDRESET != 0, Flags: flags}, nil
}

// Close writes the magic character 'V' and closes the device, which disarms
// the watchdog unless the kernel was built or loaded with nowayout. Call it
// only on a deliberate shutdown.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	_, werr := d.sys.write(d.fd, []byte{'V'})
	cerr := d.sys.close(d.fd)
	if werr != nil {
		return fmt.Errorf("disarming watchdog %s: %w", d.path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("closing watchdog %s: %w", d.path, cerr)
	}
	return nil
}
