package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestXZOffsets(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []int
	}{
		{"none", []byte("MZ kernel setup code"), nil},
		{"one", append([]byte("setup"), xzMagic...), []int{5}},
		{"two, overlapping prefix", append(append([]byte{0xfd}, xzMagic...), xzMagic...), []int{1, 7}},
		{"truncated magic", xzMagic[:5], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := XZOffsets(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("XZOffsets = %v, want %v", got, tt.want)
			}
		})
	}
}

// xz compresses b with the xz command, or skips without it (the VM test,
// which needs xz, fails loudly instead).
func xz(t *testing.T, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed (scripts/install-deps.sh vm)")
	}
	cmd := exec.Command("xz", "--check=crc32", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExtractVmlinux(t *testing.T) {
	elf := append(append([]byte{}, elfMagic...), bytes.Repeat([]byte("kernel text "), 1000)...)
	notELF := xz(t, []byte("a compressed thing that is not a kernel"))
	setup := bytes.Repeat([]byte{0x90}, 512)
	tests := []struct {
		name    string
		image   []byte
		want    []byte
		wantErr string
	}{
		{"stream after setup code, trailing data", slices.Concat(setup, xz(t, elf), []byte("trailer\x00\x01")), elf, ""},
		{"magic in setup code before the stream", slices.Concat(setup, xzMagic, setup, xz(t, elf)), elf, ""},
		{"no xz", setup, nil, "no xz stream"},
		{"not ELF", slices.Concat(setup, notELF), nil, "not an ELF"},
		{"corrupt", slices.Concat(setup, xzMagic, []byte("garbage")), nil, "xz at offset 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExtractVmlinux(context.Background(), tt.image)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes, want the %d-byte ELF", len(got), len(tt.want))
			}
		})
	}
}

func TestParseShowDepends(t *testing.T) {
	const dir = "/lib/modules/6.1.0-56-amd64"
	fixture, err := os.ReadFile("testdata/show-depends.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		dir     string
		want    []string
		wantErr string
	}{
		{
			name: "real output, dependencies first, each once",
			in:   string(fixture),
			dir:  dir,
			want: []string{
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
				"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
				"kernel/drivers/virtio/virtio_pci.ko", "kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
				"kernel/drivers/net/virtio_net.ko", "kernel/drivers/watchdog/watchdog.ko", "kernel/drivers/watchdog/i6300esb.ko",
				"kernel/drivers/net/ethernet/intel/e1000/e1000.ko", "kernel/drivers/block/virtio_blk.ko",
				"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko", "kernel/fs/jbd2/jbd2.ko",
				"kernel/fs/mbcache.ko", "kernel/lib/crc16.ko", "kernel/fs/ext4/ext4.ko",
			},
		},
		{name: "builtin only", in: "builtin unix\n", dir: dir},
		{name: "double slash from modprobe -d /", in: "insmod //lib/modules/k/kernel/a.ko \n", dir: "/lib/modules/k", want: []string{"kernel/a.ko"}},
		{name: "compressed module", in: "insmod /m/k/a.ko.xz opt=1\n", dir: "/m/k", want: []string{"a.ko.xz"}},
		{name: "other tree", in: "insmod /lib/modules/other/kernel/a.ko\n", dir: dir, wantErr: "not a module under"},
		{name: "escape", in: "insmod " + dir + "/../../../etc/shadow.ko\n", dir: dir, wantErr: "not a module under"},
		{name: "not a module", in: "insmod " + dir + "/modules.dep\n", dir: dir, wantErr: "not a module"},
		{name: "insmod alone", in: "insmod\n", dir: dir, wantErr: "without a file"},
		{name: "error text", in: "modprobe: FATAL: Module x not found\n", dir: dir, wantErr: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseShowDepends([]byte(tt.in), tt.dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func FuzzParseShowDepends(f *testing.F) {
	fixture, err := os.ReadFile("testdata/show-depends.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	f.Add([]byte("builtin unix\ninsmod /lib/modules/6.1.0-56-amd64/../x.ko\n"))
	f.Add([]byte("insmod //lib/modules/6.1.0-56-amd64/./kernel/a.ko\x00\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		files, err := ParseShowDepends(in, "/lib/modules/6.1.0-56-amd64")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, f := range files {
			if strings.HasPrefix(f, "/") || strings.HasPrefix(f, "../") || f == ".." || !strings.Contains(f, ".ko") {
				t.Fatalf("file %q escapes the module tree or is no module", f)
			}
			if seen[f] {
				t.Fatalf("file %q twice", f)
			}
			seen[f] = true
		}
	})
}
