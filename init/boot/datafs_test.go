package boot

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// image is a partition of size bytes, zero but for the given marks.
func image(size int, marks map[int]string) []byte {
	b := make([]byte, size)
	for off, m := range marks {
		copy(b[off:], m)
	}
	return b
}

func TestProbe(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		img  []byte
		want string // a part of the name; "" for blank
	}{
		{"zeros", image(4*mib, nil), ""},
		{"erased flash", bytes.Repeat([]byte{0xff}, 4*mib), ""},
		{"text but no signature", image(4*mib, map[int]string{0: "hello, world", 100000: "more"}), ""},
		{"ext4", image(4*mib, map[int]string{0x438: "\x53\xef"}), "ext2/3/4"},
		{"ext4 with its first superblock gone (1 KiB blocks)", image(16*mib, map[int]string{8193*1024 + 0x38: "\x53\xef"}), "backup superblock at byte 8389632"},
		{"ext4 with its first superblock gone (4 KiB blocks, group 1)", image(129*mib, map[int]string{128*mib + 0x38: "\x53\xef"}), "backup superblock at byte 134217728"},
		{"update bundle", image(4*mib, map[int]string{0: "TWPBXUB1"}), "bundle"},
		{"FAT", image(4*mib, map[int]string{0: "\xeb\x3c\x90mkfs.fat", 510: "\x55\xaa"}), "boot sector"},
		{"GPT", image(4*mib, map[int]string{510: "\x55\xaa", 512: "EFI PART"}), "GPT"},
		{"xfs", image(4*mib, map[int]string{0: "XFSB"}), "xfs"},
		{"btrfs", image(4*mib, map[int]string{0x10040: "_BHRfS_M"}), "btrfs"},
		{"swap", image(4*mib, map[int]string{4086: "SWAPSPACE2"}), "swap"},
		{"LUKS", image(4*mib, map[int]string{0: "LUKS\xba\xbe"}), "LUKS"},
		{"LVM", image(4*mib, map[int]string{512: "LABELONE", 0x218: "LVM2 001"}), "LVM2"},
		{"RAID 1.2", image(4*mib, map[int]string{4096: "\xfc\x4e\x2b\xa9"}), "RAID"},
		{"iso9660", image(4*mib, map[int]string{0x8001: "CD001"}), "iso9660"},
		{"squashfs", image(4*mib, map[int]string{0: "hsqs"}), "squashfs"},
		{"tiny and blank", image(100, nil), ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Probe(bytes.NewReader(tt.img), int64(len(tt.img)))
			if err != nil {
				t.Fatal(err)
			}
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("Probe = %q, want %q", got, tt.want)
			}
		})
	}
}

// failingReader fails every read at or past from.
type failingReader struct {
	r    io.ReaderAt
	from int64
}

var errDisk = errors.New("I/O error")

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.from {
		return 0, errDisk
	}
	return f.r.ReadAt(p, off)
}

func TestProbeReadErrorIsNotBlank(t *testing.T) {
	img := image(16<<20, nil)
	for _, from := range []int64{0, 600, 5000, 8 << 20} {
		got, err := Probe(failingReader{bytes.NewReader(img), from}, int64(len(img)))
		if !errors.Is(err, errDisk) {
			t.Errorf("read error from byte %d: Probe = %q, %v; want the read error", from, got, err)
		}
	}
	// A partition shorter than it says.
	if got, err := Probe(bytes.NewReader(img[:1000]), int64(len(img))); err == nil {
		t.Errorf("short partition: Probe = %q, nil; want an error", got)
	}
	if _, err := Probe(bytes.NewReader(img), -1); err == nil {
		t.Error("negative size: no error")
	}
}

func TestExtBackups(t *testing.T) {
	offs := extBackups(200 << 20)
	for _, want := range []int64{
		(1+8192)*1024 + 0x38,   // 1 KiB blocks, group 1
		(1+3*8192)*1024 + 0x38, // 1 KiB blocks, group 3
		16384*2048 + 0x38,      // 2 KiB blocks, group 1
		32768*4096 + 0x38,      // 4 KiB blocks, group 1
	} {
		found := false
		for _, o := range offs {
			found = found || o == want
		}
		if !found {
			t.Errorf("extBackups(200 MiB) lacks %d: %v", want, offs)
		}
	}
	for _, o := range offs {
		if o+2 > 200<<20 {
			t.Errorf("offset %d past the end", o)
		}
	}
}

func FuzzProbe(f *testing.F) {
	f.Add(image(2048, nil))
	f.Add(image(2048, map[int]string{0x438: "\x53\xef"}))
	f.Add(image(5000, map[int]string{4086: "SWAPSPACE2"}))
	f.Add([]byte("TWPBXUB1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("reading in memory: %v", err)
		}
		if got == "" && len(b) >= 0x43a && b[0x438] == 0x53 && b[0x439] == 0xef {
			t.Fatal("an ext4 superblock's magic taken for blank")
		}
		// A longer claimed size than the data (short enough that the
		// btrfs mark lies past it) is an error, never blank.
		if len(b) >= 0x10000 {
			return
		}
		if got, err := Probe(bytes.NewReader(b), int64(len(b))+0x20000); err == nil && got == "" {
			t.Fatal("a short read taken for blank")
		}
	})
}
