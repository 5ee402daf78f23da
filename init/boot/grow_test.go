package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/update"
)

func TestPlanGrow(t *testing.T) {
	const mib = 1 << 20
	layout, size := update.Layout(64*mib, 64*mib, 128*mib)
	data, _ := update.Find(layout, update.PartData)
	without := func(name string) []update.Partition {
		var ps []update.Partition
		for _, p := range layout {
			if p.Name != name {
				ps = append(ps, p)
			}
		}
		return ps
	}
	with := func(change func(ps []update.Partition)) []update.Partition {
		ps := append([]update.Partition{}, layout...)
		change(ps)
		return ps
	}
	tests := []struct {
		name     string
		parts    []update.Partition
		start    int64
		diskSize int64
		want     int64
		notOurs  bool
	}{
		{"the image's own size: nothing to gain", layout, data.Start, size, data.Size, false},
		{"1 GiB disk: to the last MiB before the backup GPT", layout, data.Start, 1 << 30, 1<<30 - mib - data.Start, false},
		{"an odd size: rounded down to a MiB", layout, data.Start, 1<<30 + 12345*512, 1<<30 + 6*mib - data.Start, false},
		{"half a MiB more: the image's spare MiB at the end", layout, data.Start, size + 512*1024, data.Size + mib, false},
		{"less than the backup GPT more: nothing", layout, data.Start, size + 10*1024, data.Size, false},
		{"a 2 TB disk", layout, data.Start, 2_000_398_934_016, (2_000_398_934_016-gptTail)/mib*mib - data.Start, false},
		{"already grown", with(func(ps []update.Partition) { ps[len(ps)-1].Size = 1<<30 - mib - data.Start }), data.Start, 1 << 30, 1<<30 - mib - data.Start, false},
		{"not the partition the kernel mounts", layout, data.Start + mib, 1 << 30, 0, true},
		{"no boot state partition: not a box's disk", without(update.PartState), data.Start, 1 << 30, 0, true},
		{"no data partition", without(update.PartData), data.Start, 1 << 30, 0, true},
		{"a partition after the data partition", append(append([]update.Partition{}, layout...),
			update.Partition{Name: "user", Type: update.TypeLinuxData, Start: data.Start + data.Size, Size: mib}), data.Start, 1 << 30, 0, true},
		{"a partition inside the data partition", append(append([]update.Partition{}, layout...),
			update.Partition{Name: "user", Type: update.TypeLinuxData, Start: data.Start + mib, Size: mib}), data.Start, 1 << 30, 0, true},
		{"the data partition of another type", with(func(ps []update.Partition) { ps[len(ps)-1].Type = update.TypeLinuxReserved }), data.Start, 1 << 30, 0, true},
		{"a disk smaller than the partition table says", layout, data.Start, data.Start + data.Size, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planGrow(tt.parts, tt.start, tt.diskSize)
			if tt.notOurs {
				if !errors.Is(err, ErrNotOurs) {
					t.Fatalf("got %d, %v; want ErrNotOurs", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("size %d, want %d", got, tt.want)
			}
			if end := tt.start + got; end%mib != 0 && got != data.Size || end+gptTail > tt.diskSize {
				t.Errorf("ends at byte %d on a disk of %d", end, tt.diskSize)
			}
		})
	}
}

// superblock is 2 KiB holding an ext4 superblock with the given fields
// at byte 1024.
func superblock(logBS uint32, blocksLo, blocksHi uint32, bit64 bool) []byte {
	b := make([]byte, 4096)
	sb := b[1024:]
	binary.LittleEndian.PutUint16(sb[extMagicOff:], extMagic)
	binary.LittleEndian.PutUint32(sb[0x04:], blocksLo)
	binary.LittleEndian.PutUint32(sb[0x18:], logBS)
	if bit64 {
		binary.LittleEndian.PutUint32(sb[0x60:], 0x80)
		binary.LittleEndian.PutUint32(sb[0x150:], blocksHi)
	}
	return b
}

func TestReadExtSuper(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
		want extSuper
		bad  bool
	}{
		{"4 KiB blocks", superblock(2, 32768, 0, false), extSuper{4096, 32768}, false},
		{"1 KiB blocks", superblock(0, 65536, 0, false), extSuper{1024, 65536}, false},
		{"64bit", superblock(2, 5, 1, true), extSuper{4096, 1<<32 + 5}, false},
		{"high word ignored without 64bit", superblock(2, 5, 1, false), extSuper{4096, 5}, false},
		{"no magic", make([]byte, 4096), extSuper{}, true},
		{"absurd block size", superblock(40, 5, 0, false), extSuper{}, true},
		{"no blocks", superblock(2, 0, 0, false), extSuper{}, true},
		{"absurd high word", superblock(2, 0, 1<<31, true), extSuper{}, true},
		{"short", superblock(2, 5, 0, false)[:1500], extSuper{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readExtSuper(bytes.NewReader(tt.img))
			if tt.bad != (err != nil) {
				t.Fatalf("got %+v, %v", got, err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzReadExtSuper(f *testing.F) {
	f.Add(superblock(2, 32768, 0, false))
	f.Add(superblock(0, 65536, 7, true))
	f.Add(make([]byte, 2048))
	f.Fuzz(func(t *testing.T, img []byte) {
		sb, err := readExtSuper(bytes.NewReader(img))
		if err != nil {
			return
		}
		if sb.BlockSize < 1024 || sb.BlockSize > 64<<10 || sb.Blocks <= 0 || sb.Blocks >= 1<<52 {
			t.Fatalf("accepted %+v", sb)
		}
		if n := fsGrowBlocks(sb, sb.Blocks*sb.BlockSize); n != 0 {
			t.Fatalf("a file system that fills its partition grows to %d blocks", n)
		}
	})
}

func TestFsGrowBlocks(t *testing.T) {
	sb := extSuper{BlockSize: 4096, Blocks: 32768}
	for _, tt := range []struct {
		part, want int64
	}{
		{128 << 20, 0},
		{128<<20 + 4095, 0},
		{128<<20 + 4096, 32769},
		{1 << 30, 262144},
		{64 << 20, 0}, // never shrinks
	} {
		if got := fsGrowBlocks(sb, tt.part); got != tt.want {
			t.Errorf("partition of %d bytes: %d blocks, want %d", tt.part, got, tt.want)
		}
	}
}
