package media

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestBindNonLocal checks, in a network namespace of its own, that the
// relay binds an address the box does not have yet (the virtual IP on a
// standby) when net.ipv4.ip_nonlocal_bind=1, and says clearly why it
// cannot when the setting is off.
func TestBindNonLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	done := make(chan error, 1)
	go func() {
		// The thread stays locked and dies with the goroutine, so the
		// namespace never leaks into other tests.
		runtime.LockOSThread()
		done <- inNamespace()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func inNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	// With no interface up, the kernel lets any address be bound; with
	// lo up it checks, as on a real box.
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	vip := netip.MustParseAddr("192.0.2.77")
	r, err := NewRelay(Config{Addr: vip, PortLow: 30000, PortHigh: 30007})
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = r.Open("off")
	if !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "assign requested address") {
		return errors.New("with ip_nonlocal_bind=0, want ErrNoPorts naming the bind error, got: " + errorString(err))
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_nonlocal_bind", []byte("1"), 0o644); err != nil {
		return err
	}
	s, err := r.Open("on")
	if err != nil {
		return err
	}
	return s.Close()
}

func errorString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
