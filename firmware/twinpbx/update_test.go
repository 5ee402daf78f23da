package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fwupdate "github.com/twinpbx/twinpbx/firmware/update"
)

const (
	testKey = "../update/testdata/test.key"
	testPub = "../update/testdata/test.pub"
)

// testDisk is a disk image with bundle v1 active in slot A, and a v2
// bundle file.
func testDisk(t *testing.T) (disk, bundle string) {
	t.Helper()
	priv, err := fwupdate.LoadPrivateKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk := func(v string) []byte {
		var b bytes.Buffer
		parts := []fwupdate.Part{{Name: fwupdate.PartKernel, Data: []byte("k " + v)}, {Name: fwupdate.PartInitramfs, Data: []byte("i " + v)}}
		if err := fwupdate.WriteBundle(&b, priv, v, parts); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	disk = filepath.Join(dir, "disk.img")
	if err := fwupdate.CreateImage(disk, 0, 1<<20, 1<<20, "t"); err != nil {
		t.Fatal(err)
	}
	if err := fwupdate.Install(fwupdate.ImageDisk{Path: disk}, fwupdate.SlotA, mk("v1"), priv.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	bundle = filepath.Join(dir, "v2.bundle")
	if err := os.WriteFile(bundle, mk("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	return disk, bundle
}

func TestUpdateCommand(t *testing.T) {
	disk, bundle := testDisk(t)
	var out, errOut bytes.Buffer
	cli := func(args ...string) error {
		out.Reset()
		errOut.Reset()
		return run(context.Background(), args, &out, &errOut)
	}
	if err := cli("update", "--disk", disk, "--key", testPub, bundle); err != nil {
		t.Fatalf("update: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "bundle v2 written to slot B") {
		t.Errorf("update said %q", out.String())
	}
	if err := cli("update", "status", "--disk", disk); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"active slot A (v1)", "other slot  B (v2)", "on trial    B (v2), 1 boot(s) left"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"update"}, 2, "one BUNDLE"},
		{[]string{"update", "--disk", disk, "--key", testPub, "--reboot", bundle}, 2, "--reboot is for the box"},
		{[]string{"update", "--disk", disk, "--key", "../update/testdata/other.pub", bundle}, 1, "signature"},
		{[]string{"update", "--disk", disk, "--key", testPub, bundle}, 1, "trial"},
		{[]string{"update", "--disk", disk, "--key", "/nonexistent", bundle}, 1, "update key"},
		{[]string{"flash", disk}, 2, "IMAGE and DEVICE"},
		{[]string{"flash", bundle, filepath.Join(t.TempDir(), "x")}, 1, "not a twinpbx disk image"},
	}
	for _, tt := range tests {
		err := cli(tt.args...)
		if code := exitCode(err); code != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: exit %d, %v; want %d and %q", tt.args, code, err, tt.code, tt.want)
		}
	}
}

func TestFlashCommand(t *testing.T) {
	disk, _ := testDisk(t)
	target := filepath.Join(t.TempDir(), "box.img")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"flash", disk, target}, &out, &errOut); err != nil {
		t.Fatalf("flash: %v\n%s", err, errOut.String())
	}
	a, _ := os.ReadFile(disk)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) || !strings.Contains(out.String(), "written and read back") {
		t.Fatalf("flash wrote %d bytes of %d: %s", len(b), len(a), out.String())
	}
}
