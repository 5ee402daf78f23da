package watchdog

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSys records the calls the driver makes and answers like a driver that
// rounds timeouts up to a multiple of its granularity.
type fakeSys struct {
	calls       []string
	openErr     error
	infoErr     error
	setErr      error
	kickErr     error
	granularity int
	timeout     int
	boot        uint32
	writes      []byte
}

func (f *fakeSys) open(path string) (int, error) {
	f.calls = append(f.calls, "open")
	if f.openErr != nil {
		return -1, f.openErr
	}
	return 7, nil
}
func (f *fakeSys) close(fd int) error { f.calls = append(f.calls, "close"); return nil }
func (f *fakeSys) write(fd int, b []byte) (int, error) {
	f.calls = append(f.calls, "write "+string(b))
	f.writes = append(f.writes, b...)
	return len(b), nil
}
func (f *fakeSys) keepalive(fd int) error { f.calls = append(f.calls, "keepalive"); return f.kickErr }
func (f *fakeSys) setTimeout(fd int, s int) (int, error) {
	f.calls = append(f.calls, "settimeout")
	if f.setErr != nil {
		return 0, f.setErr
	}
	g := max(f.granularity, 1)
	f.timeout = (s + g - 1) / g * g
	return f.timeout, nil
}
func (f *fakeSys) getTimeout(fd int) (int, error) {
	f.calls = append(f.calls, "gettimeout")
	return f.timeout, nil
}
func (f *fakeSys) bootStatus(fd int) (uint32, error) { return f.boot, nil }
func (f *fakeSys) info(fd int) (*unix.WatchdogInfo, error) {
	f.calls = append(f.calls, "getsupport")
	if f.infoErr != nil {
		return nil, f.infoErr
	}
	i := &unix.WatchdogInfo{Options: unix.WDIOF_SETTIMEOUT | unix.WDIOF_MAGICCLOSE | unix.WDIOF_KEEPALIVEPING}
	copy(i.Identity[:], "i6300ESB timer")
	return i, nil
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name        string
		sys         *fakeSys
		timeout     time.Duration
		want        time.Duration
		wantErr     string
		wantCalls   []string
		wantID      string
		wantNoWrite bool
	}{
		{
			name: "sets timeout", sys: &fakeSys{}, timeout: 5 * time.Second, want: 5 * time.Second,
			wantCalls: []string{"open", "getsupport", "settimeout"}, wantID: "i6300ESB timer", wantNoWrite: true,
		},
		{
			name: "driver rounds up", sys: &fakeSys{granularity: 4}, timeout: 5 * time.Second, want: 8 * time.Second,
			wantCalls: []string{"open", "getsupport", "settimeout"}, wantID: "i6300ESB timer", wantNoWrite: true,
		},
		{
			name: "sub-second rounds up to a second", sys: &fakeSys{}, timeout: 300 * time.Millisecond, want: time.Second,
			wantCalls: []string{"open", "getsupport", "settimeout"}, wantID: "i6300ESB timer", wantNoWrite: true,
		},
		{
			name: "zero keeps driver timeout", sys: &fakeSys{timeout: 30}, want: 30 * time.Second,
			wantCalls: []string{"open", "getsupport", "gettimeout"}, wantID: "i6300ESB timer", wantNoWrite: true,
		},
		{
			name: "no GETSUPPORT: identity is the path", sys: &fakeSys{infoErr: unix.ENOTTY, timeout: 60}, want: time.Minute,
			wantCalls: []string{"open", "getsupport", "gettimeout"}, wantID: "/dev/watchdog", wantNoWrite: true,
		},
		{
			name: "busy", sys: &fakeSys{openErr: unix.EBUSY}, timeout: time.Second,
			wantErr: "held by another process", wantCalls: []string{"open"},
		},
		{
			name: "set timeout fails: disarm", sys: &fakeSys{setErr: unix.EINVAL}, timeout: time.Hour,
			wantErr: "setting timeout", wantCalls: []string{"open", "getsupport", "settimeout", "write V", "close"},
		},
		{
			name: "fixed timeout driver", sys: &fakeSys{setErr: unix.ENOTTY, timeout: 60}, timeout: 10 * time.Second, want: time.Minute,
			wantCalls: []string{"open", "getsupport", "settimeout", "gettimeout"}, wantID: "i6300ESB timer", wantNoWrite: true,
		},
		{name: "negative timeout", sys: &fakeSys{}, timeout: -time.Second, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := open(tt.sys, DefaultDevice, tt.timeout)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("open: err %v, want %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if d.Timeout() != tt.want {
					t.Errorf("Timeout() = %v, want %v", d.Timeout(), tt.want)
				}
				if d.Identity() != tt.wantID {
					t.Errorf("Identity() = %q, want %q", d.Identity(), tt.wantID)
				}
			}
			if !slices.Equal(tt.sys.calls, tt.wantCalls) {
				t.Errorf("calls %q, want %q", tt.sys.calls, tt.wantCalls)
			}
			if tt.wantNoWrite && len(tt.sys.writes) != 0 {
				t.Errorf("wrote %q while opening", tt.sys.writes)
			}
		})
	}
}

func TestDeviceKickBootStatusClose(t *testing.T) {
	sys := &fakeSys{boot: unix.WDIOF_CARDRESET}
	d, err := open(sys, DefaultDevice, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := d.Kick(); err != nil {
			t.Fatalf("Kick: %v", err)
		}
	}
	if n := strings.Count(strings.Join(sys.calls, ","), "keepalive"); n != 3 {
		t.Errorf("%d keepalives, want 3", n)
	}
	if slices.Contains(sys.writes, 'V') {
		t.Fatal("magic close written before Close")
	}
	bs, err := d.BootStatus()
	if err != nil || !bs.WatchdogReset || bs.Flags != unix.WDIOF_CARDRESET {
		t.Errorf("BootStatus() = %+v, %v; want a watchdog reset", bs, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sys.calls[len(sys.calls)-2:]; !slices.Equal(got, []string{"write V", "close"}) {
		t.Errorf("Close made calls %q, want magic close then close", got)
	}
	if err := d.Kick(); !errors.Is(err, ErrClosed) {
		t.Errorf("Kick after Close = %v, want ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestDeviceKickFallsBackToWrite(t *testing.T) {
	sys := &fakeSys{kickErr: unix.ENOTTY}
	d, err := open(sys, DefaultDevice, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Kick(); err != nil {
		t.Fatal(err)
	}
	if len(sys.writes) != 1 || sys.writes[0] == 'V' {
		t.Errorf("kick by write wrote %q, want one byte that is not V", sys.writes)
	}
}

func TestDeviceKickError(t *testing.T) {
	sys := &fakeSys{kickErr: unix.EIO}
	d, err := open(sys, DefaultDevice, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Kick(); !errors.Is(err, unix.EIO) {
		t.Errorf("Kick = %v, want EIO", err)
	}
}

func TestOpenMissingDevice(t *testing.T) {
	_, err := Open(t.TempDir()+"/watchdog", time.Second)
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("Open of a missing device = %v, want ENOENT", err)
	}
}
