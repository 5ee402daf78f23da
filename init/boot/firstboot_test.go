package boot

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

func TestFirstBootConfig(t *testing.T) {
	for _, addr := range []netip.Addr{{}, netip.MustParseAddr("10.0.2.15")} {
		t.Run(addr.String(), func(t *testing.T) {
			b, err := FirstBootConfig(bytes.NewReader(bytes.Repeat([]byte{7, 42, 99}, 400)), addr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := config.Parse("first-boot.yaml", b)
			if err != nil {
				t.Fatalf("twinpbx would refuse the first-boot config: %v\n%s", err, b)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("first-boot config invalid: %v\n%s", err, b)
			}
			if !slices.Contains(c.SIP.Listen, "udp:0.0.0.0:5060") {
				t.Errorf("listen %v: phones on the LAN cannot reach it", c.SIP.Listen)
			}
			want := ""
			if addr.IsValid() {
				want = addr.String()
			}
			if c.SIP.Advertise != want {
				t.Errorf("advertise %q, want %q", c.SIP.Advertise, want)
			}
			if len(c.Extensions) == 0 || c.Extensions[0].Secret == "" {
				t.Errorf("no extensions with secrets: %+v", c.Extensions)
			}
			if c.Cluster != nil {
				t.Error("a first-boot box is not a twin")
			}
		})
	}
}

func TestInspectData(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  DataState
	}{
		{name: "empty"},
		{name: "standalone", files: []string{store.FileName}, want: DataState{Stored: true}},
		{name: "twin", files: []string{store.FileName, boxconfig.FileName}, want: DataState{Stored: true, Twin: true}},
		{name: "twin before its first store", files: []string{boxconfig.FileName}, want: DataState{Twin: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := InspectData(dir)
			if err != nil || got != tt.want {
				t.Errorf("InspectData = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := InspectData(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("a missing data folder is an empty one, got %v", err)
	}
}

func TestInitKeepsWatchdog(t *testing.T) {
	tests := []struct {
		dev  string
		s    DataState
		want bool
	}{
		{"/dev/watchdog", DataState{}, true},
		{"/dev/watchdog", DataState{Stored: true}, true},
		{"/dev/watchdog", DataState{Twin: true}, false}, // the node holds it
		{"sim", DataState{}, false},
		{"", DataState{}, false},
	}
	for _, tt := range tests {
		if got := InitKeepsWatchdog(tt.dev, tt.s); got != tt.want {
			t.Errorf("InitKeepsWatchdog(%q, %+v) = %v, want %v", tt.dev, tt.s, got, tt.want)
		}
	}
}

func TestRunArgs(t *testing.T) {
	if got, want := RunArgs("qemu", ""), []string{"run", "--data", "/data", "--board", "qemu"}; !slices.Equal(got, want) {
		t.Errorf("RunArgs = %q, want %q", got, want)
	}
	if got := RunArgs("qemu", "/run/c.yaml"); !slices.Equal(got[len(got)-2:], []string{"--config", "/run/c.yaml"}) {
		t.Errorf("RunArgs with a config = %q", got)
	}
}
