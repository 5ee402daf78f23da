package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/ldd"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/init/boot"
)

// KernelRelease is the Debian kernel ABI the image is pinned to (the
// release linux-image-amd64 installed when the image was first built).
// A newer ABI is a deliberate change: set Options.KernelRelease (make
// image KVER=...) and record it here.
const KernelRelease = "6.1.0-56-amd64"

// Modules are the kernel modules put into the image, each with its
// dependencies: the qemu board's NICs and watchdog, e1000 for other
// virtual machines, and virtio_blk and ext4 for a data partition, with
// crc32c_generic named on its own because init loads it before ext4
// (ext4 asks for crc32c through the crypto API, by a modprobe the image
// does not have).
var Modules = []string{"virtio_pci", "virtio_net", "i6300esb", "e1000", "virtio_blk", "crc32c_generic", "ext4"}

// Commands are the u-root commands put into the image for rescue work on
// the console, as one busybox binary in /bbin.
var Commands = []string{
	"cat", "dmesg", "free", "gosh", "ip", "ls", "mount", "ping", "ps", "shutdown", "umount", "uname",
}

// HostFiles are files of the build machine put into the image as they
// are: e2fsprogs' mke2fs (at boot.Mke2fs, with the shared libraries it
// needs at their paths, found by u-root's ldd) and its configuration,
// which init runs on a blank data partition, and e2fsck (boot.E2fsck,
// the same libraries), which init runs on the data partition before it
// mounts it. A Go ext4 writer would
// spare the C libraries, but none is both well kept and complete enough
// to trust with the box's data (docs/IMAGE.md).
var HostFiles = []HostFile{
	{Src: "/usr/sbin/mke2fs", Dst: boot.Mke2fs, Libraries: true},
	{Src: "/etc/mke2fs.conf", Dst: "/etc/mke2fs.conf"},
	{Src: "/usr/sbin/e2fsck", Dst: boot.E2fsck, Libraries: true},
}

// HostPackages are the Debian packages HostFiles come from, whose
// versions MANIFEST records.
var HostPackages = []string{"e2fsprogs", "libext2fs2", "libcom-err2", "libblkid1", "libuuid1", "libc6"}

// HostFile is one file of the build machine to put into the image.
type HostFile struct {
	Src, Dst string
	// Libraries: Src is a dynamically linked program; its shared
	// libraries and loader go into the image at their own paths.
	Libraries bool
}

// Options say what to build and where.
type Options struct {
	// Root is the twinpbx module's folder (go.mod).
	Root string
	// Out receives vmlinux, bzImage, initramfs.cpio.xz and MANIFEST.
	Out string
	// KernelRelease names the kernel; empty: the pinned KernelRelease.
	KernelRelease string
	// Vmlinuz and ModulesDir default to Debian's paths for the release.
	Vmlinuz, ModulesDir string
	// Modules and Commands default to the package's lists.
	Modules, Commands []string
	// HostFiles defaults to the package's list.
	HostFiles []HostFile
	// UpdateKey is the public key update bundles must be signed with; it
	// goes into the initramfs (update.KeyPath). Without one the box
	// refuses every update.
	UpdateKey ed25519.PublicKey
	// Nice runs the compilers and compressors under `nice -n 19`, to
	// spare whatever else runs on the machine.
	Nice bool
	Log  *slog.Logger
}

// Result describes what was built.
type Result struct {
	KernelRelease string
	// Files are the outputs by name with their size and sha256.
	Files    []File
	Duration time.Duration
	// Inputs is a digest of what went into the initramfs; Reused is set
	// when the initramfs in Out already came from the same inputs and
	// was kept.
	Inputs string
	Reused bool
}

// File is one output file.
type File struct {
	Name   string
	Size   int64
	SHA256 string
}

// Output file names in Options.Out.
const (
	Vmlinux   = "vmlinux"
	BzImage   = "bzImage"
	Initramfs = "initramfs.cpio.xz"
	Manifest  = "MANIFEST"
)

func (o *Options) defaults() {
	if o.KernelRelease == "" {
		o.KernelRelease = KernelRelease
	}
	if o.Vmlinuz == "" {
		o.Vmlinuz = "/boot/vmlinuz-" + o.KernelRelease
	}
	if o.ModulesDir == "" {
		o.ModulesDir = "/lib/modules/" + o.KernelRelease
	}
	if o.Modules == nil {
		o.Modules = Modules
	}
	if o.Commands == nil {
		o.Commands = Commands
	}
	if o.HostFiles == nil {
		o.HostFiles = HostFiles
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// MissingTools names the host programs and files Build needs that are not
// there, so a caller can say what to install.
func MissingTools(o Options) []string {
	o.defaults()
	var miss []string
	for _, t := range []string{"go", "xz", "modprobe", "depmod"} {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	files := []string{o.Vmlinuz, filepath.Join(o.ModulesDir, "modules.dep")}
	for _, h := range o.HostFiles {
		files = append(files, h.Src)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			miss = append(miss, f)
		}
	}
	return miss
}

// Build makes the image in o.Out. Inputs that have not changed give
// byte-identical outputs: binaries are built with -trimpath, without VCS
// stamps or build IDs; the cpio records are sorted with zeroed times and
// owners by u-root; xz runs single-threaded. The kernel and binaries are
// made every time (the Go build cache makes that quick); the initramfs
// only when its inputs changed since the one in o.Out was made.
func Build(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	start := time.Now()
	res := Result{KernelRelease: o.KernelRelease}
	if miss := MissingTools(o); len(miss) > 0 {
		return res, fmt.Errorf("building the image: missing %s (run scripts/install-deps.sh vm)", strings.Join(miss, ", "))
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return res, fmt.Errorf("creating the output folder: %w", err)
	}
	stage, err := os.MkdirTemp(o.Out, ".stage-")
	if err != nil {
		return res, fmt.Errorf("creating the staging folder: %w", err)
	}
	defer os.RemoveAll(stage)

	// Kernel: as shipped, and uncompressed.
	vmlinuz, err := os.ReadFile(o.Vmlinuz)
	if err != nil {
		return res, fmt.Errorf("reading the kernel: %w", err)
	}
	vmlinux, err := ExtractVmlinux(ctx, vmlinuz)
	if err != nil {
		return res, err
	}
	if err := writeFile(filepath.Join(o.Out, BzImage), vmlinuz); err != nil {
		return res, err
	}
	// With the date of Debian's file (the kernel package's): a signed
	// build without SOURCE_DATE_EPOCH signs at that time (SigningTime).
	st, err := os.Stat(o.Vmlinuz)
	if err != nil {
		return res, fmt.Errorf("reading the kernel: %w", err)
	}
	if err := os.Chtimes(filepath.Join(o.Out, BzImage), st.ModTime(), st.ModTime()); err != nil {
		return res, fmt.Errorf("dating the kernel: %w", err)
	}
	if err := writeFile(filepath.Join(o.Out, Vmlinux), vmlinux); err != nil {
		return res, err
	}

	// Binaries.
	bin := filepath.Join(stage, "bin")
	for _, p := range []struct{ pkg, name string }{{"./init", "init"}, {"./firmware/twinpbx", "twinpbx"}} {
		o.Log.Info("building", "package", p.pkg)
		if err := o.run(ctx, o.Root, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"},
			"go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", filepath.Join(bin, p.name), p.pkg); err != nil {
			return res, fmt.Errorf("building %s: %w", p.pkg, err)
		}
	}

	// Files in /etc: the update key.
	etc := filepath.Join(stage, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return res, fmt.Errorf("staging /etc: %w", err)
	}
	if o.UpdateKey != nil {
		if err := os.WriteFile(filepath.Join(etc, filepath.Base(update.KeyPath)), update.MarshalPublicKey(o.UpdateKey), 0o644); err != nil {
			return res, fmt.Errorf("staging the update key: %w", err)
		}
	}

	// Modules with their dependencies, in the versioned tree.
	modRoot := filepath.Join(stage, "modroot")
	if err := o.stageModules(ctx, modRoot); err != nil {
		return res, err
	}

	// The build machine's files (mke2fs and its libraries).
	hostRoot := filepath.Join(stage, "host")
	if err := o.stageHostFiles(hostRoot); err != nil {
		return res, err
	}

	// The initramfs is made again only when what goes into it changed.
	inputs, err := inputDigest(o, o.Root, bin, modRoot, etc, hostRoot)
	if err != nil {
		return res, err
	}
	res.Inputs = inputs
	if reusable(o.Out, inputs) {
		o.Log.Info("initramfs up to date: its inputs have not changed", "inputs", inputs[:12])
		res.Reused = true
	} else if err := o.initramfs(ctx, stage, bin, modRoot, etc, hostRoot); err != nil {
		return res, err
	}

	for _, name := range []string{Vmlinux, BzImage, Initramfs} {
		f, err := describe(filepath.Join(o.Out, name))
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, f)
	}
	if err := writeFile(filepath.Join(o.Out, Manifest), manifest(o, res)); err != nil {
		return res, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// initramfs builds the initramfs with u-root's builder and compresses it
// into o.Out.
func (o *Options) initramfs(ctx context.Context, stage, bin, modRoot, etc, hostRoot string) error {
	cpio := filepath.Join(stage, "initramfs.cpio")
	args := []string{"tool", "u-root", "-o", cpio, "-initcmd=", "-uinitcmd=", "-defaultsh=gosh", "-skip-ldd",
		"-files", filepath.Join(bin, "init") + ":init",
		"-files", filepath.Join(bin, "twinpbx") + ":bin/twinpbx",
		"-files", filepath.Join(modRoot, "lib", "modules") + ":lib/modules",
	}
	if o.UpdateKey != nil {
		args = append(args, "-files", filepath.Join(etc, filepath.Base(update.KeyPath))+":"+update.KeyPath[1:])
	}
	hostArgs, err := filesArgs(hostRoot)
	if err != nil {
		return err
	}
	args = append(args, hostArgs...)
	for _, c := range o.Commands {
		args = append(args, "github.com/u-root/u-root/cmds/core/"+c)
	}
	o.Log.Info("building the initramfs with u-root", "commands", o.Commands)
	if err := o.run(ctx, o.Root, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, "go", args...); err != nil {
		return fmt.Errorf("u-root: %w", err)
	}
	// The kernel's xz decoder checks CRC32 only; -T1 keeps the output
	// the same whatever the machine's core count.
	xzOut := filepath.Join(stage, Initramfs)
	if err := o.run(ctx, "", nil, "sh", "-c", `xz --check=crc32 -T1 -6 -c "$1" > "$2"`, "xz", cpio, xzOut); err != nil {
		return fmt.Errorf("compressing the initramfs: %w", err)
	}
	if err := os.Rename(xzOut, filepath.Join(o.Out, Initramfs)); err != nil {
		return fmt.Errorf("moving the initramfs: %w", err)
	}
	return nil
}

// stageHostFiles copies o.HostFiles, and the shared libraries of those
// that are programs, into root at their paths in the image.
func (o *Options) stageHostFiles(root string) error {
	var n int
	for _, h := range o.HostFiles {
		if err := copyHostFile(h.Src, filepath.Join(root, h.Dst)); err != nil {
			return fmt.Errorf("staging %s: %w", h.Src, err)
		}
		n++
		if !h.Libraries {
			continue
		}
		libs, err := ldd.List(h.Src)
		if err != nil {
			return fmt.Errorf("finding the shared libraries of %s: %w", h.Src, err)
		}
		for _, l := range libs {
			if !filepath.IsAbs(l) {
				return fmt.Errorf("shared library %q of %s: not an absolute path", l, h.Src)
			}
			// copyFile follows links: the library's file under the
			// name the program asks for.
			if err := copyHostFile(l, filepath.Join(root, l)); err != nil {
				return fmt.Errorf("staging %s's library: %w", h.Src, err)
			}
			n++
		}
	}
	o.Log.Info("build machine's files staged", "files", n)
	return nil
}

// copyHostFile copies src, following links, with its permissions (the
// loader and programs must stay executable).
func copyHostFile(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := copyFile(src, dst); err != nil {
		return err
	}
	return os.Chmod(dst, st.Mode().Perm())
}

// filesArgs are u-root's -files arguments for every file under root, at
// its path below root in the image, in a fixed order.
func filesArgs(root string) ([]string, error) {
	var args []string
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		args = append(args, "-files", p+":"+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the staged files: %w", err)
	}
	return args, nil
}

// inputDigest is a sha256 over everything that goes into the initramfs:
// the built binaries, the staged module tree, the command list and
// go.mod and go.sum (which pin u-root and the commands' sources).
func inputDigest(o Options, root string, dirs ...string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "commands %q\n", o.Commands)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("hashing the image's inputs: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(d, p)
			fmt.Fprintf(h, "%s %s %d\n", filepath.Base(d), filepath.ToSlash(rel), len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hashing the image's inputs: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// reusable reports whether out holds an initramfs made from inputs: its
// manifest names them and the file's sha256 is the one recorded.
func reusable(out, inputs string) bool {
	m, err := os.ReadFile(filepath.Join(out, Manifest))
	if err != nil || !bytes.Contains(m, []byte("\ninputs "+inputs+"\n")) {
		return false
	}
	f, err := describe(filepath.Join(out, Initramfs))
	if err != nil {
		return false
	}
	return bytes.Contains(m, fmt.Appendf(nil, "\nfile %s %d %s\n", f.Name, f.Size, f.SHA256))
}

// stageModules copies the module closure and the kernel's module lists
// into root/lib/modules/KVER and runs depmod there.
func (o *Options) stageModules(ctx context.Context, root string) error {
	var files []string
	for _, m := range o.Modules {
		out, err := exec.CommandContext(ctx, "modprobe", "-S", o.KernelRelease, "-d", filepath.Dir(filepath.Dir(filepath.Dir(o.ModulesDir))), "--show-depends", m).Output()
		if err != nil {
			return fmt.Errorf("finding the dependencies of kernel module %s: %w", m, err)
		}
		fs, err := ParseShowDepends(out, o.ModulesDir)
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", m, err)
		}
		for _, f := range fs {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	dst := filepath.Join(root, "lib", "modules", o.KernelRelease)
	for _, f := range append(files, "modules.builtin", "modules.builtin.modinfo", "modules.order") {
		if err := copyFile(filepath.Join(o.ModulesDir, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("staging kernel modules: %w", err)
		}
	}
	if err := o.run(ctx, "", nil, "depmod", "-b", root, o.KernelRelease); err != nil {
		return fmt.Errorf("depmod: %w", err)
	}
	o.Log.Info("kernel modules staged", "release", o.KernelRelease, "files", len(files))
	return nil
}

// run runs a command, niced when asked, with its output in the error.
func (o *Options) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	if o.Nice {
		args = append([]string{"-n", "19", name}, args...)
		name = "nice"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w\n%s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// writeFile replaces name atomically, so a failed build leaves no torn
// file and two builds into the same folder do not mix their bytes.
func writeFile(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o644)); err != nil {
		return errors.Join(fmt.Errorf("writing %s: %w", name, err), os.Remove(f.Name()))
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return errors.Join(fmt.Errorf("writing %s: %w", name, err), os.Remove(f.Name()))
	}
	return nil
}

func describe(name string) (File, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return File{}, fmt.Errorf("reading %s: %w", name, err)
	}
	sum := sha256.Sum256(b)
	return File{Name: filepath.Base(name), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// manifest records what the image is made of; it holds nothing that
// changes from build to build (no times).
func manifest(o Options, r Result) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "kernel_release %s\n", o.KernelRelease)
	if v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "linux-image-"+o.KernelRelease).Output(); err == nil {
		fmt.Fprintf(&b, "kernel_package linux-image-%s %s\n", o.KernelRelease, v)
	}
	for _, pkg := range HostPackages {
		if v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output(); err == nil {
			fmt.Fprintf(&b, "host_package %s %s\n", pkg, v)
		}
	}
	fmt.Fprintf(&b, "modules %s\n", strings.Join(o.Modules, " "))
	fmt.Fprintf(&b, "commands %s\n", strings.Join(o.Commands, " "))
	fmt.Fprintf(&b, "inputs %s\n", r.Inputs)
	for _, f := range r.Files {
		fmt.Fprintf(&b, "file %s %d %s\n", f.Name, f.Size, f.SHA256)
	}
	return b.Bytes()
}
