package supervisor

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/hw/watchdog"
)

func TestParseChildEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    childEnv
		wantErr error // nil: any error when wantOK is false
		wantOK  bool
	}{
		{"none hosted", map[string]string{}, childEnv{}, ErrNoWatchdog, false},
		{"armed", map[string]string{EnvWatchdogFD: "3", EnvWatchdogTimeout: "5s"}, childEnv{fd: 3, timeout: 5 * time.Second}, nil, true},
		{"after a reset", map[string]string{EnvWatchdogFD: "4", EnvWatchdogTimeout: "500ms", EnvWatchdogBoot: "reset"}, childEnv{fd: 4, timeout: 500 * time.Millisecond, reset: true}, nil, true},
		{"stdio fd", map[string]string{EnvWatchdogFD: "2", EnvWatchdogTimeout: "5s"}, childEnv{}, nil, false},
		{"fd not a number", map[string]string{EnvWatchdogFD: "three", EnvWatchdogTimeout: "5s"}, childEnv{}, nil, false},
		{"no timeout", map[string]string{EnvWatchdogFD: "3"}, childEnv{}, nil, false},
		{"zero timeout", map[string]string{EnvWatchdogFD: "3", EnvWatchdogTimeout: "0s"}, childEnv{}, nil, false},
		{"unknown boot", map[string]string{EnvWatchdogFD: "3", EnvWatchdogTimeout: "5s", EnvWatchdogBoot: "power"}, childEnv{}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChildEnv(func(k string) string { return tt.env[k] })
			switch {
			case tt.wantOK && err != nil:
				t.Fatalf("error %v", err)
			case !tt.wantOK && err == nil:
				t.Fatalf("accepted: %+v", got)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestKickerMessages runs the child side in this process against a
// socket pair and reads what the parent would.
func TestKickerMessages(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent := os.NewFile(uintptr(fds[0]), "parent")
	t.Cleanup(func() { _ = parent.Close() })
	t.Setenv(EnvWatchdogFD, strconv.Itoa(fds[1]))
	t.Setenv(EnvWatchdogTimeout, "3s")
	t.Setenv(EnvWatchdogBoot, "reset")

	k, err := ChildWatchdog()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(EnvWatchdogFD) != "" {
		t.Error("ChildWatchdog left its variables for grandchildren")
	}
	if _, err := ChildWatchdog(); !errors.Is(err, ErrNoWatchdog) {
		t.Errorf("second ChildWatchdog = %v, want ErrNoWatchdog", err)
	}
	if b, _ := k.BootStatus(); !b.WatchdogReset || k.Timeout() != 3*time.Second || k.Identity() != "supervisor" {
		t.Errorf("boot %+v, timeout %v, identity %q", b, k.Timeout(), k.Identity())
	}
	if err := k.Kick(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Kick(); !errors.Is(err, watchdog.ErrClosed) {
		t.Errorf("Kick after Close = %v, want ErrClosed", err)
	}
	var got []byte
	buf := make([]byte, 8)
	for {
		n, err := parent.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	if string(got) != "OkV" {
		t.Errorf("parent read %q, want open, kick, magic close", got)
	}
}
