package boot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestListening(t *testing.T) {
	tests := []struct {
		file string
		udp  bool
		want bool
	}{
		{"udp-none", true, false},
		{"udp-bound", true, true},
		{"udp-connected", true, false}, // a DNS query's socket waits for no one
		{"udp6-sip", true, true},
		{"tcp-established", false, false},
		{"tcp6-listen", false, true},
		{"tcp6-listen", true, false}, // 0A is no UDP state
		{"udp-bound", false, false},  // 07 is a closed TCP socket
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "procnet", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := Listening(b, tt.udp); got != tt.want {
				t.Errorf("Listening(%s, udp %v) = %v, want %v", tt.file, tt.udp, got, tt.want)
			}
		})
	}
}

func FuzzListening(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "procnet", "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Add([]byte("0: : : 07\n:\n"), true)
	f.Fuzz(func(t *testing.T, table []byte, udp bool) {
		_ = Listening(table, udp) // must not panic
	})
}

func TestSplitDataModules(t *testing.T) {
	tests := []struct {
		name      string
		mods      []string
		now, data []string
	}{
		{"qemu board", []string{"virtio_pci", "virtio_net", "i6300esb", "virtio_blk", "crc32c_generic", "ext4"},
			[]string{"virtio_pci", "virtio_net", "i6300esb", "virtio_blk"}, []string{"crc32c_generic", "ext4"}},
		{"twice, from the command line too", []string{"virtio_blk", "ext4", "virtio_blk", "crc32c_generic", "ext4"},
			[]string{"virtio_blk", "virtio_blk"}, []string{"ext4", "crc32c_generic", "ext4"}},
		{"no file system", []string{"igb", "sp5100_tco"}, []string{"igb", "sp5100_tco"}, nil},
		{"none", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, data := SplitDataModules(tt.mods)
			if !slices.Equal(now, tt.now) || !slices.Equal(data, tt.data) {
				t.Errorf("SplitDataModules(%v) = %v, %v; want %v, %v", tt.mods, now, data, tt.now, tt.data)
			}
		})
	}
}
