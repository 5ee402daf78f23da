package update

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// FlashResult says what Flash wrote.
type FlashResult struct {
	Bytes  int64
	SHA256 string
	// Device is set when the target was a block device (not a file).
	Device bool
}

// Places Flash looks at; tests change them.
type flashEnv struct {
	mountinfo string // /proc/self/mountinfo
	sysDev    string // /sys/dev/block
}

var hostEnv = flashEnv{mountinfo: "/proc/self/mountinfo", sysDev: "/sys/dev/block"}

// Flash writes the disk image to target (a whole disk device, or a file),
// syncs it, reads it back from the medium and compares sha256 sums, and
// moves the backup GPT to the end of a device larger than the image. It
// refuses an image without the box's partitions, a target smaller than
// the image, and a device of which any partition is mounted.
func Flash(image, target string, log *slog.Logger) (FlashResult, error) {
	return hostEnv.flash(image, target, log)
}

func (e flashEnv) flash(image, target string, log *slog.Logger) (FlashResult, error) {
	var res FlashResult
	img, err := os.Open(image)
	if err != nil {
		return res, fmt.Errorf("opening the image: %w", err)
	}
	defer img.Close()
	ist, err := img.Stat()
	if err != nil {
		return res, fmt.Errorf("opening the image: %w", err)
	}
	parts, err := ReadGPT(img)
	if err != nil {
		return res, fmt.Errorf("%s is not a twinpbx disk image: %w", image, err)
	}
	for _, name := range []string{PartState, PartA, PartB, PartData} {
		if _, ok := Find(parts, name); !ok {
			return res, fmt.Errorf("%s is not a twinpbx disk image: no partition %s", image, name)
		}
	}
	size := ist.Size()

	tst, err := os.Stat(target)
	switch {
	case os.IsNotExist(err):
		// A new file.
	case err != nil:
		return res, fmt.Errorf("looking at %s: %w", target, err)
	case tst.Mode()&os.ModeDevice != 0:
		res.Device = true
		dev, _ := devNumber(tst)
		if m, err := e.mountedOn(dev); err != nil {
			return res, err
		} else if m != "" {
			return res, fmt.Errorf("refusing to flash %s: it or one of its partitions is mounted on %s", target, m)
		}
	case !tst.Mode().IsRegular():
		return res, fmt.Errorf("refusing to flash %s: neither a block device nor a file", target)
	}
	flags := os.O_RDWR
	if !res.Device {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	out, err := os.OpenFile(target, flags, 0o644)
	if err != nil {
		return res, fmt.Errorf("opening %s: %w", target, err)
	}
	defer out.Close()
	var devSize int64
	if res.Device {
		devSize, err = out.Seek(0, io.SeekEnd)
		if err != nil {
			return res, fmt.Errorf("sizing %s: %w", target, err)
		}
		if devSize < size {
			return res, fmt.Errorf("refusing to flash %s: %d bytes, the image needs %d", target, devSize, size)
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return res, fmt.Errorf("writing %s: %w", target, err)
		}
	}

	log.Info("flashing", "image", image, "target", target, "bytes", size)
	h := sha256.New()
	buf := make([]byte, 4<<20)
	n, err := io.CopyBuffer(io.MultiWriter(out, h), io.NewSectionReader(img, 0, size), buf)
	if err != nil {
		return res, fmt.Errorf("writing %s: %w", target, err)
	}
	if err := syncDrop(out); err != nil {
		return res, fmt.Errorf("syncing %s: %w", target, err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	h.Reset()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(out, 0, size), buf); err != nil {
		return res, fmt.Errorf("reading %s back: %w", target, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return res, fmt.Errorf("reading %s back: sha256 %s, wrote %s: the medium does not keep what is written", target, got, want)
	}
	if devSize > size {
		// The image's backup GPT sits where the image ends: move it to
		// the disk's end.
		if err := FitGPT(out, devSize); err != nil {
			return res, fmt.Errorf("fitting the GPT to %s: %w", target, err)
		}
		if err := syncDrop(out); err != nil {
			return res, fmt.Errorf("syncing %s: %w", target, err)
		}
		if _, err := ReadGPT(out); err != nil {
			return res, fmt.Errorf("reading %s's GPT back: %w", target, err)
		}
	}
	if res.Device {
		if err := rereadPartitions(out); err != nil {
			log.Warn("the kernel did not re-read the partition table (unplug and plug the disk to see it)", "err", err)
		}
	}
	res.Bytes, res.SHA256 = n, want
	log.Info("flashed and verified", "target", target, "bytes", n, "sha256", want)
	return res, nil
}

// mountedOn returns a mount point of the block device dev (major:minor)
// or of one of its partitions, or "".
func (e flashEnv) mountedOn(dev string) (string, error) {
	if dev == "" {
		return "", nil
	}
	devs := map[string]bool{dev: true}
	ents, _ := os.ReadDir(filepath.Join(e.sysDev, dev))
	for _, ent := range ents {
		if _, err := os.Stat(filepath.Join(e.sysDev, dev, ent.Name(), "partition")); err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(e.sysDev, dev, ent.Name(), "dev")); err == nil {
			devs[strings.TrimSpace(string(b))] = true
		}
	}
	mi, err := os.ReadFile(e.mountinfo)
	if err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	return mountedIn(mi, devs), nil
}

// mountedIn returns the first mount point in a mountinfo text whose
// device number is in devs.
func mountedIn(mountinfo []byte, devs map[string]bool) string {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && devs[f[2]] {
			return f[4]
		}
	}
	return ""
}

func fmtDev(major, minor uint32) string { return fmt.Sprintf("%d:%d", major, minor) }
