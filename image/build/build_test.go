package build

import (
	"os"
	"path/filepath"
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
