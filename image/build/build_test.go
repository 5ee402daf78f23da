package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
)

func TestInputDigestAndReuse(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	write := func(dir, name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(root, "go.mod", "module x\n")
	write(root, "go.sum", "")
	write(bin, "init", "init v1")
	o := Options{Commands: []string{"ls"}}
	digest := func() string {
		t.Helper()
		d, err := inputDigest(o, root, bin)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d1 := digest()
	if digest() != d1 {
		t.Fatal("digest differs for the same inputs")
	}

	out := t.TempDir()
	write(out, Initramfs, "compressed")
	f, err := describe(filepath.Join(out, Initramfs))
	if err != nil {
		t.Fatal(err)
	}
	write(out, Manifest, string(manifest(o, Result{Inputs: d1, Files: []File{f}})))
	if !reusable(out, d1) {
		t.Fatal("an initramfs made from the same inputs is not reused")
	}

	changes := []struct {
		name   string
		change func()
	}{
		{"binary", func() { write(bin, "init", "init v2") }},
		{"new file", func() { write(bin, "twinpbx", "x") }},
		{"go.sum", func() { write(root, "go.sum", "u-root v0.17\n") }},
		{"commands", func() { o.Commands = []string{"ls", "cat"} }},
	}
	seen := map[string]bool{d1: true}
	for _, c := range changes {
		c.change()
		d := digest()
		if seen[d] {
			t.Errorf("changing the %s leaves the digest as before", c.name)
		}
		seen[d] = true
		if reusable(out, d) {
			t.Errorf("after changing the %s the old initramfs is reused", c.name)
		}
	}

	write(out, Initramfs, "tampered")
	if reusable(out, d1) {
		t.Error("an initramfs whose sha256 differs from the manifest is reused")
	}
}

// TestStageHostFiles stages the image's mke2fs and e2fsck with their
// libraries and runs them in a chroot of the staged files alone: nothing
// they need may be missing from the image.
func TestStageHostFiles(t *testing.T) {
	if _, err := os.Stat(HostFiles[0].Src); err != nil {
		t.Skipf("%v (scripts/install-deps.sh vm installs e2fsprogs)", err)
	}
	root := t.TempDir()
	o := Options{}
	o.defaults()
	if err := o.stageHostFiles(root); err != nil {
		t.Fatal(err)
	}
	args, err := filesArgs(root)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for i := 1; i < len(args); i += 2 {
		_, dst, _ := strings.Cut(args[i], ":")
		dsts = append(dsts, dst)
	}
	for _, want := range []string{"sbin/mke2fs", "sbin/e2fsck", "etc/mke2fs.conf", "lib/x86_64-linux-gnu/libext2fs.so.2", "lib/x86_64-linux-gnu/libc.so.6"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("the image lacks %s: %v", want, dsts)
		}
	}
	if !sort.StringsAreSorted(dsts) {
		t.Errorf("files not in a fixed order: %v", dsts)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot chroot to run the staged mke2fs")
	}
	for _, prog := range []string{"/sbin/mke2fs", "/sbin/e2fsck"} {
		cmd := exec.Command(prog, "-V")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), filepath.Base(prog)) {
			t.Fatalf("the staged %s does not run on the staged files alone: %v\n%s", prog, err, out)
		}
	}
}
