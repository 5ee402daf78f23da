// Command qemutwin runs a twin pair of the firmware image in two QEMU
// machines (make qemu-twin), as root: the crossover cable between them is
// a QEMU dgram link, the office LAN a bridge in a network namespace of
// its own that also holds the gateway's address and two phone addresses.
// Both machines' serial ports are on a vmtest.TwinLine: one simulated
// Numato relay board (ttyS1) and the PSTN line, the ISDN exchange
// emulator, which the relay connects to one machine's card (ttyS2);
// calls from the line ring extension 101, one each time a line "c" is
// typed here. Both consoles are shown here, each line marked with its
// box, the relay board's and the line's lines with "line"; Ctrl-C stops
// the machines and removes the namespace. Kill one machine (its pid is
// printed) to see the other take over, and the relay follow.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
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

	line, err := vmtest.NewTwinLine(dir, slog.New(slog.NewTextHandler(prefixed{stdout, "line│ "}, nil)))
	if err != nil {
		return err
	}
	defer line.Close()
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
		cfg.Trunks = append(cfg.Trunks, vmtest.TwinISDNTrunk(exts[len(exts)-1].Number))
		disk, err := vmtest.TwinDisk(ctx, dir, cfg)
		if err != nil {
			return err
		}
		c := vmtest.TwinMachine(*img, initrd, node, disk)
		c.Extra = append(c.Extra, line.Serial(node)...)
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
	fmt.Fprintf(stdout, "the PSTN line's calls ring extension %s: type c and Enter to place one (through the box the relay selects)\n\n", exts[len(exts)-1].Number)
	go calls(ctx, os.Stdin, stdout, line)

	return show(ctx, stdout, vms)
}

// calls places a call from the PSTN line for each line "c" read from in:
// through the box the relay selects, answered or not, hung up after 10 s
// of talk.
func calls(ctx context.Context, in io.Reader, out io.Writer, line *vmtest.TwinLine) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "c" {
			continue
		}
		go func() {
			if err := lineCall(ctx, out, line); err != nil {
				fmt.Fprintln(out, "line│ call failed:", err)
			}
		}()
	}
}

func lineCall(ctx context.Context, out io.Writer, line *vmtest.TwinLine) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	side := line.Side()
	x, err := line.Exchange(ctx, side)
	if err != nil {
		return err
	}
	if err := x.WaitReady(ctx); err != nil {
		return fmt.Errorf("no ISDN data link on side %v: %w", side, err)
	}
	fmt.Fprintf(out, "line│ calling the box on side %v from 030123456\n", side)
	call, err := x.Dial(ctx, exchange.DialParams{Calling: "030123456", Called: "4930555"})
	if err != nil {
		return err
	}
	if err := call.Wait(ctx, exchange.Connected); err != nil {
		return fmt.Errorf("%w (status %v, cause %d)", err, call.Status(), call.Cause())
	}
	fmt.Fprintln(out, "line│ answered; hanging up in 10 s")
	select {
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	return call.Hangup(context.Background(), 16)
}

// prefixed writes each write (one log line) to w with a prefix.
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
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
