// Command qemutwin runs a twin pair of the firmware image in two QEMU
// machines (make qemu-twin), as root: the crossover cable between them is
// a QEMU dgram link, the office LAN a bridge in a network namespace of
// its own that also holds the gateway's address and two phone addresses.
// Both consoles are shown here, each line marked with its box; Ctrl-C
// stops the machines and removes the namespace. Kill one machine (its
// pid is printed) to see the other take over.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/image/vmtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "qemutwin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("qemutwin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	img := fs.String("image", "out/image", "image folder (make image)")
	accel := fs.String("accel", "tcg", "QEMU accelerator")
	mem := fs.Int("mem", 512, "memory of each machine, MB")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it makes a network namespace with taps")
	}
	initrd, err := vmtest.Uncompressed(ctx, *img)
	if err != nil {
		return fmt.Errorf("%w (make image first)", err)
	}
	key, err := secret(16)
	if err != nil {
		return err
	}
	var exts []config.Extension
	for _, n := range []string{"100", "101"} {
		s, err := secret(8)
		if err != nil {
			return err
		}
		exts = append(exts, config.Extension{Number: n, Secret: s})
	}

	tn, err := vmtest.NewTwinNet(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := tn.Close(); err != nil {
			fmt.Fprintln(stderr, "qemutwin: removing the network:", err)
		}
	}()
	dir, err := os.MkdirTemp("", "qemutwin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var vms []*vmtest.Machine
	defer func() {
		for _, m := range vms {
			m.Kill()
		}
	}()
	for _, node := range vmtest.TwinNodes {
		cfg, err := vmtest.TwinBoxConfig(node, key, exts...)
		if err != nil {
			return err
		}
		disk, err := vmtest.TwinDisk(ctx, dir, cfg)
		if err != nil {
			return err
		}
		c := vmtest.TwinMachine(*img, initrd, node, disk)
		c.Accel, c.MemoryMB = *accel, *mem
		m, err := tn.Start(c)
		if err != nil {
			return err
		}
		vms = append(vms, m)
		fmt.Fprintf(stdout, "box %s: QEMU pid %d (kill it to take the box down)\n", node, m.Pid())
	}
	fmt.Fprintf(stdout, "LAN %s in network namespace %s: VIP %s, gateway %s, phones may use %s and %s\n",
		vmtest.TwinLAN, tn.NS, vmtest.TwinVIP.Addr(), vmtest.TwinGateway, vmtest.TwinPhones[0], vmtest.TwinPhones[1])
	for _, e := range exts {
		fmt.Fprintf(stdout, "extension %s, password %s\n", e.Number, e.Secret)
	}
	fmt.Fprintf(stdout, "phones run in the namespace (ip netns exec %s baresip, sipp, …) from %s or %s and register to sip:100@%s with a password above\nCtrl-C ends both machines.\n\n",
		tn.NS, vmtest.TwinPhones[0], vmtest.TwinPhones[1], vmtest.TwinVIP.Addr())

	return show(ctx, stdout, vms)
}

// show copies the machines' consoles to w, each line marked with its
// box, until ctx ends or both machines have ended.
func show(ctx context.Context, w io.Writer, vms []*vmtest.Machine) error {
	shown := make([]int, len(vms))
	partial := make([]string, len(vms))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ended := 0
		for i, m := range vms {
			out := m.Console()
			partial[i] += out[shown[i]:]
			shown[i] = len(out)
			lines := strings.Split(partial[i], "\n")
			partial[i] = lines[len(lines)-1]
			for _, l := range lines[:len(lines)-1] {
				fmt.Fprintf(w, "%s│ %s\n", vmtest.TwinNodes[i], strings.TrimRight(l, "\r"))
			}
			select {
			case <-m.Done():
				ended++
			default:
			}
		}
		if ended == len(vms) {
			return errors.New("both machines ended")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// secret is n random bytes in hex.
func secret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
