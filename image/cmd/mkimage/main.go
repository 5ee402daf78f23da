// Command mkimage builds the twinpbx firmware image (make image): the
// kernel, uncompressed and as shipped, the initramfs, the signed update
// bundle and the disk image to flash, in -out, and reports their sizes
// and the build time. -bundle-only makes the bundle without the disk
// image (make bundle).
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/image/build"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "out/image", "output folder")
	kver := fs.String("kver", build.KernelRelease, "Debian kernel release to build with")
	nice := fs.Bool("nice", true, "run compilers and compressors under nice -n 19")
	keyFile := fs.String("key", "out/keys/update.key", "ed25519 signing key (PEM, PKCS #8); made when missing")
	version := fs.String("version", "dev", "firmware version named in the bundle")
	bundleOnly := fs.Bool("bundle-only", false, "make the bundle, not the disk image")
	stage := fs.String("stage-cmdline", "console=tty0 console=ttyS0,115200 panic=10", "kernel command line of the boot stage in the EFI system partition")
	sbKey := fs.String("sb-key", "", "private key (PEM) that signs the boot stage for UEFI Secure Boot; unsigned without it")
	sbCert := fs.String("sb-cert", "", "certificate (PEM) of -sb-key, the one enrolled in the board's db")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	sb, err := secureBoot(*sbKey, *sbCert)
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	key, err := signingKey(*keyFile, stderr)
	if err != nil {
		return err
	}
	res, err := build.Build(ctx, build.Options{Root: root, Out: *out, KernelRelease: *kver, Nice: *nice, Log: log, UpdateKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		return err
	}
	how := "built"
	if res.Reused {
		how = "checked, initramfs unchanged,"
	}
	fmt.Fprintf(stdout, "image for kernel %s in %s (%s in %s):\n", res.KernelRelease, *out, how, res.Duration.Round(100*time.Millisecond))
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "  %-18s %6.1f MB  sha256 %s\n", f.Name, float64(f.Size)/1e6, f.SHA256)
	}
	dres, err := build.BuildDisk(ctx, build.DiskOptions{Image: *out, Version: *version, Key: key, NoDisk: *bundleOnly, StageCmdline: *stage, SecureBoot: sb})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "update bundle %s and disk image in %s:\n", *version, dres.Duration.Round(100*time.Millisecond))
	fmt.Fprintf(stdout, "  %-18s %6.1f MB  sha256 %s\n", dres.Bundle.Name, float64(dres.Bundle.Size)/1e6, dres.Bundle.SHA256)
	if !*bundleOnly {
		fmt.Fprintf(stdout, "  %-18s %6.1f MB  sha256 %s (%.1f MB allocated: sparse)\n", dres.Disk.Name, float64(dres.Disk.Size)/1e6, dres.Disk.SHA256, float64(dres.DiskAllocated)/1e6)
		reportStage(stdout, dres)
	} else {
		for _, s := range dres.KernelSigners {
			fmt.Fprintf(stdout, "  bundle's kernel signed for Secure Boot by %s (issuer %s)\n", s.Subject, s.Issuer)
		}
	}
	return nil
}

// secureBoot is the Secure Boot signing key of -sb-key and -sb-cert:
// both or neither.
func secureBoot(key, cert string) (*build.SecureBoot, error) {
	switch {
	case key == "" && cert == "":
		return nil, nil
	case key == "" || cert == "":
		return nil, errors.New("-sb-key and -sb-cert (SB_KEY and SB_CERT) go together: the key signs the boot stage, the certificate checks it")
	}
	return &build.SecureBoot{Key: key, Cert: cert}, nil
}

// reportStage says whether the boot stage is signed for Secure Boot, and
// by whom.
func reportStage(w io.Writer, r build.DiskResult) {
	fmt.Fprintf(w, "  %-18s %6.1f MB  sha256 %s\n", r.Stage.Name, float64(r.Stage.Size)/1e6, r.Stage.SHA256)
	if len(r.StageSigners) == 0 {
		fmt.Fprintln(w, "  boot stage NOT signed for Secure Boot (make image SB_KEY=... SB_CERT=... signs it): boards must have Secure Boot off")
		return
	}
	for _, s := range r.StageSigners {
		fmt.Fprintf(w, "  boot stage signed for Secure Boot by %s (issuer %s), checked with sbverify\n", s.Subject, s.Issuer)
	}
	for _, s := range r.KernelSigners {
		fmt.Fprintf(w, "  bundle's kernel (%s) signed by %s (issuer %s): the locked-down stage kexecs it\n", build.SignedBzImage, s.Subject, s.Issuer)
	}
	if !r.SigningTime.IsZero() {
		fmt.Fprintf(w, "  signed at %s (SOURCE_DATE_EPOCH, else the kernel package's date, within the certificate's validity): the same inputs sign to the same bytes\n",
			r.SigningTime.UTC().Format(time.RFC3339))
	}
}

// signingKey reads the bundle signing key, or makes one when the file
// does not exist (a development key: keep it, boxes flashed with this
// image accept only bundles it signed).
func signingKey(path string, stderr io.Writer) (ed25519.PrivateKey, error) {
	k, err := update.LoadPrivateKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, k, err = ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("making a signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("making a signing key: %w", err)
	}
	if err := os.WriteFile(path, update.MarshalPrivateKey(k), 0o600); err != nil {
		return nil, fmt.Errorf("making a signing key: %w", err)
	}
	fmt.Fprintf(stderr, "mkimage: made a new bundle signing key %s: keep it, boxes flashed with this image accept only bundles signed with it\n", path)
	return k, nil
}
