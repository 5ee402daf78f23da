package boot

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type fakeMounter struct {
	calls []string
	fail  map[string]error // by target
}

func (f *fakeMounter) MkdirAll(path string, _ os.FileMode) error {
	f.calls = append(f.calls, "mkdir "+path)
	return nil
}

func (f *fakeMounter) Mount(source, target, fstype string, _ uintptr, _ string) error {
	f.calls = append(f.calls, fmt.Sprintf("mount %s %s %s", fstype, source, target))
	return f.fail[target]
}

func TestBaseMounts(t *testing.T) {
	var targets []string
	for _, m := range BaseMounts() {
		targets = append(targets, m.Target)
		if m.Flags&unix.MS_NOSUID == 0 {
			t.Errorf("%s is mounted without nosuid", m.Target)
		}
	}
	want := []string{"/proc", "/sys", "/dev", "/dev/pts", "/run", "/tmp"}
	if !slices.Equal(targets, want) {
		t.Errorf("targets %v, want %v (in that order: /dev before /dev/pts)", targets, want)
	}
}

func TestDataMount(t *testing.T) {
	if m := DataMount(""); m.FSType != "tmpfs" || m.Target != DataDir {
		t.Errorf("no device: %+v, want a tmpfs on %s", m, DataDir)
	}
	if m := DataMount("/dev/vda"); m.FSType != "ext4" || m.Source != "/dev/vda" || m.Target != DataDir {
		t.Errorf("device: %+v, want /dev/vda as ext4 on %s", m, DataDir)
	}
}

func TestMountAll(t *testing.T) {
	tests := []struct {
		name      string
		fail      map[string]error
		wantCalls int
		wantErr   string
	}{
		{name: "all", wantCalls: 12},
		{name: "devtmpfs already mounted by the kernel", fail: map[string]error{"/dev": unix.EBUSY}, wantCalls: 12},
		{name: "stops at the first failure", fail: map[string]error{"/sys": unix.ENODEV}, wantCalls: 4, wantErr: "mounting sysfs (sysfs) on /sys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMounter{fail: tt.fail}
			err := mountAll(f, BaseMounts())
			if len(f.calls) != tt.wantCalls {
				t.Errorf("calls %q, want %d", f.calls, tt.wantCalls)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case tt.wantErr != "" && !errors.Is(err, unix.ENODEV):
				t.Errorf("error %v does not wrap the cause", err)
			}
			if len(f.calls) >= 2 && f.calls[0] != "mkdir /proc" {
				t.Errorf("first call %q, want the mount point made first", f.calls[0])
			}
		})
	}
}
