// Package build makes the twinpbx firmware image from Debian's kernel and
// the twinpbx sources: the uncompressed kernel (vmlinux, fast to boot
// under QEMU's TCG), the kernel as shipped (bzImage) and an xz-compressed
// u-root initramfs holding init, twinpbx, the kernel modules the boards
// need (with their dependencies, in the versioned tree depmod made) and
// a few rescue commands. Same inputs give the same bytes. It runs at
// build time only; nothing on the box imports it.
package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strings"
)

// xzMagic starts every xz stream.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// elfMagic starts vmlinux.
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// XZOffsets are the offsets in a compressed kernel (bzImage) where an xz
// stream may start, first first.
func XZOffsets(vmlinuz []byte) []int {
	var offs []int
	for i := 0; ; {
		j := bytes.Index(vmlinuz[i:], xzMagic)
		if j < 0 {
			return offs
		}
		offs = append(offs, i+j)
		i += j + 1
	}
}

// ExtractVmlinux unpacks the uncompressed ELF kernel from an xz-compressed
// bzImage with the xz command: the first xz stream that decompresses to
// an ELF file. Data after the stream is ignored (--single-stream).
func ExtractVmlinux(ctx context.Context, vmlinuz []byte) ([]byte, error) {
	offs := XZOffsets(vmlinuz)
	if len(offs) == 0 {
		return nil, errors.New("extracting vmlinux: no xz stream in the kernel (not an xz-compressed bzImage)")
	}
	var lastErr error
	for _, off := range offs {
		cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(vmlinuz[off:])
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			lastErr = fmt.Errorf("xz at offset %d: %w: %s", off, err, strings.TrimSpace(stderr.String()))
			continue
		}
		if bytes.HasPrefix(out, elfMagic) {
			return out, nil
		}
		lastErr = fmt.Errorf("xz stream at offset %d is not an ELF kernel", off)
	}
	return nil, fmt.Errorf("extracting vmlinux: %w", lastErr)
}

// ParseShowDepends reads the output of `modprobe -S KVER --show-depends
// MODULE` and returns the module files it names, relative to modulesDir
// (/lib/modules/KVER), in load order (dependencies first), each once.
// Built-in modules ("builtin NAME") need no file and are skipped.
func ParseShowDepends(out []byte, modulesDir string) ([]string, error) {
	prefix := path.Clean(modulesDir) + "/"
	var files []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "builtin":
			continue
		case "insmod":
		default:
			return nil, fmt.Errorf("modprobe --show-depends line %d: unexpected %q", n, sc.Text())
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("modprobe --show-depends line %d: insmod without a file", n)
		}
		rel, ok := strings.CutPrefix(path.Clean(f[1]), prefix)
		if !ok || !strings.Contains(path.Base(rel), ".ko") {
			return nil, fmt.Errorf("modprobe --show-depends line %d: %q is not a module under %s", n, f[1], prefix)
		}
		if !seen[rel] {
			seen[rel] = true
			files = append(files, rel)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modprobe --show-depends: %w", err)
	}
	return files, nil
}
