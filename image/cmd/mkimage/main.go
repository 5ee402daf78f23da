// Command mkimage builds the twinpbx firmware image (make image): the
// kernel, uncompressed and as shipped, and the initramfs, in -out, and
// reports their sizes and the build time.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := build.Build(ctx, build.Options{Root: root, Out: *out, KernelRelease: *kver, Nice: *nice, Log: log})
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
	return nil
}
