package vmtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/image/build"
)

// Console lines of init's data partition checks.
const (
	markerPreened   = `msg="e2fsck repaired the data partition"`
	markerPartGrown = `msg="data partition grown to the end of the disk"`
	markerFSGrown   = `msg="data file system grown to fill its partition"`
	markerMounted   = `msg="data partition mounted"`
	markerDamaged   = `DATA PARTITION DAMAGED`
	markerBootDone  = `msg="boot done: starting twinpbx"`
)

// TestDataDisk boots the image on data partitions that need init's
// care, the two cases in parallel:
//
//   - grown: the image's A/B disk, enlarged by 256 MiB with truncate as
//     a flashed image on a larger disk, its data file system marked not
//     cleanly unmounted with a wrong free block count (a superblock poke):
//     init must preen it with e2fsck, grow the partition to the disk's
//     end and the file system to the partition, and mount it; the GPT
//     must then be sound (sfdisk), the file system fill the partition
//     and the persistent log hold init's lines about it;
//   - damaged: an ext4 data disk whose root inode was cleared (debugfs),
//     which e2fsck -p cannot repair: init must say so, mount nothing
//     from it and run on the tmpfs; the file system must be as e2fsck
//     left it (marked as having errors), never mounted nor formatted.
//
// The stage is off (twinpbx.stage=off): the image boots on itself and
// finds the data partition by its name, as a slot does.
func TestDataDisk(t *testing.T) {
	requireVM(t)
	img := image(t)
	raw, err := Uncompressed(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	const appendData = "quiet twinpbx.modules=virtio_blk,crc32c_generic,ext4 twinpbx.stage=off"
	bootWith := func(t *testing.T, disk, extra string) *Machine {
		return boot(t, Config{Image: img, SIPPort: freeUDPPort(t), Initrd: raw,
			Append: appendData + extra,
			Extra:  []string{"-drive", "file=" + disk + ",if=virtio,format=raw"}})
	}

	t.Run("grown", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		res, err := build.BuildDisk(context.Background(), build.DiskOptions{Image: img, Out: dir, Version: "v1",
			Key: updateKey(t), DataSize: 64 << 20, NoESP: true})
		if err != nil {
			t.Fatal(err)
		}
		disk := filepath.Join(dir, build.Disk)
		const more = 256 << 20
		if err := os.Truncate(disk, res.Disk.Size+more); err != nil {
			t.Fatal(err)
		}
		data := dataPart(t, disk)
		pokeSuper(t, disk, data.Start)

		m := bootWith(t, disk, "")
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		var at [4]time.Duration
		for i, s := range []string{markerPreened, markerPartGrown, markerFSGrown, markerMounted} {
			if at[i], err = m.WaitConsole(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.WaitConsole(ctx, markerBootDone); err != nil {
			t.Fatal(err)
		}
		m.Kill()
		t.Logf("grown: preened %v, partition grown %v, file system grown %v, mounted %v after QEMU's start; init said:\n%s",
			at[0].Round(10*time.Millisecond), at[1].Round(10*time.Millisecond), at[2].Round(10*time.Millisecond), at[3].Round(10*time.Millisecond),
			consoleLines(m.Console(), "e2fsck", "grown", "data partition mounted"))

		grown := dataPart(t, disk)
		if want := data.Size + more; grown.Start != data.Start || grown.Size != want {
			t.Errorf("data partition after the boot: bytes %d+%d, want %d+%d", grown.Start, grown.Size, data.Start, want)
		}
		if out, err := exec.Command("sfdisk", "--verify", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Errorf("sfdisk --verify: %v\n%s", err, out)
		}
		f, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sb := make([]byte, 1024)
		if _, err := f.ReadAt(sb, grown.Start+1024); err != nil {
			t.Fatal(err)
		}
		bs := int64(1024) << binary.LittleEndian.Uint32(sb[0x18:])
		if fsSize := int64(binary.LittleEndian.Uint32(sb[0x04:])) * bs; fsSize != grown.Size {
			t.Errorf("the file system holds %d bytes, its partition %d", fsSize, grown.Size)
		}
		// init's lines about the partition are in the persistent log.
		if log := fileInPartition(t, disk, grown, "/twinpbx.log"); !strings.Contains(log, markerPreened) || !strings.Contains(log, markerFSGrown) {
			t.Errorf("the persistent log lacks init's data partition lines:\n%s", log)
		}
	})

	t.Run("damaged", func(t *testing.T) {
		t.Parallel()
		disk := filepath.Join(t.TempDir(), "data.img")
		if err := os.WriteFile(disk, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 64<<20); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][]string{
			{"mke2fs", "-q", "-t", "ext4", "-O", "^metadata_csum", disk},
			{"debugfs", "-w", "-R", "clri <2>", disk},
			{"debugfs", "-w", "-R", "ssv state 0", disk},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
		before := superFields(t, disk)
		m := bootWith(t, disk, " twinpbx.data=/dev/vda")
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		at, err := m.WaitConsole(ctx, markerDamaged)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.WaitConsole(ctx, markerBootDone); err != nil {
			t.Fatal(err)
		}
		m.Kill()
		out := m.Console()
		t.Logf("damaged: said %v after QEMU's start:\n%s", at.Round(10*time.Millisecond), consoleLines(out, "DATA PARTITION"))
		if strings.Contains(out, markerMounted) || strings.Contains(out, "formatted") {
			t.Error("the damaged data partition was mounted or formatted")
		}
		// e2fsck -p itself marks the file system as having errors (and
		// writes the superblock's time); nothing else may have
		// touched it: never mounted, never formatted.
		after := superFields(t, disk)
		for _, k := range []string{"Filesystem UUID", "Mount count", "Last mount time", "Last mounted on"} {
			if after[k] != before[k] || after[k] == "" {
				t.Errorf("%s: %q before the boot, %q after", k, before[k], after[k])
			}
		}
		if after["Filesystem state"] != "not clean with errors" {
			t.Errorf("file system state %q after the boot, want e2fsck's mark \"not clean with errors\"", after["Filesystem state"])
		}
	})
}

// superFields are the superblock's fields as dumpe2fs -h prints them.
func superFields(t *testing.T, path string) map[string]string {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", path).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// dataPart is the data partition of the disk image at path.
func dataPart(t *testing.T, path string) update.Partition {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts, err := update.ReadGPT(f)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := update.Find(parts, update.PartData)
	if !ok {
		t.Fatalf("no %s partition in %s", update.PartData, path)
	}
	return p
}

// fileInPartition reads a file from the ext4 in partition p of the disk
// image at path: a sparse copy of the partition, its journal replayed
// (the machine was killed), then debugfs.
func fileInPartition(t *testing.T, path string, p update.Partition, name string) string {
	t.Helper()
	part := filepath.Join(t.TempDir(), "part.img")
	const mib = 1 << 20
	for _, c := range [][]string{
		{"dd", "if=" + path, "of=" + part, "bs=1M", "conv=sparse", "status=none",
			"skip=" + strconv.FormatInt(p.Start/mib, 10), "count=" + strconv.FormatInt(p.Size/mib, 10)},
		{"e2fsck", "-fy", part},
	} {
		// e2fsck's exit code 1 (repaired: the journal replayed) is fine.
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || c[0] != "e2fsck" || ee.ExitCode() > 1 {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
	}
	out, err := exec.Command("debugfs", "-R", "cat "+name, part).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", name, err)
	}
	return string(out)
}

// pokeSuper marks the ext4 at byte off of the disk image as not cleanly
// unmounted (s_state 0) with a wrong free block count: what e2fsck -p
// repairs by itself.
func pokeSuper(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, off+1024); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		t.Fatal("no ext4 superblock in the data partition")
	}
	binary.LittleEndian.PutUint16(sb[0x3a:], 0)    // s_state: not clean
	binary.LittleEndian.PutUint32(sb[0x0c:], 1234) // s_free_blocks_count_lo
	if _, err := f.WriteAt(sb, off+1024); err != nil {
		t.Fatal(err)
	}
}

// consoleLines are the console's lines holding any of parts.
func consoleLines(out string, parts ...string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(out, "\n") {
		for _, p := range parts {
			if strings.Contains(l, p) {
				b.WriteString(strings.TrimSpace(l) + "\n")
				break
			}
		}
	}
	return b.String()
}
