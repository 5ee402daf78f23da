// Command isdnexchange runs the emulated ISDN exchange on its own: the
// network side of one span, on the serial line of an ISDN card port: a
// real port (-device), a new pseudo-terminal whose path it prints (-pty),
// which the box or a test opens as its card, or a unix socket (-listen)
// that QEMU connects the VM's card port to (qemu ... -serial
// unix:PATH). It answers the box's calls after -ring, refuses numbers
// listed in -busy, and with -call places one call to the box and hangs it
// up after -talk.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "isdnexchange:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout io.Writer, args []string) error {
	fs := flag.NewFlagSet("isdnexchange", flag.ContinueOnError)
	device := fs.String("device", "", "serial port of the line (the card's port)")
	baud := fs.Int("baud", 115200, "line speed of -device")
	usePty := fs.Bool("pty", false, "serve the line on a new pseudo-terminal and print its path")
	listen := fs.String("listen", "", "serve the line on this unix socket path, one connection at a time")
	spanType := fs.String("type", "bri-ptmp", "span type: bri-ptp, bri-ptmp or pri-e1")
	ring := fs.Duration("ring", 2*time.Second, "ring the box's calls this long before answering")
	busy := fs.String("busy", "", "comma-separated numbers answered busy (cause 17)")
	call := fs.String("call", "", "place a call to the box: CALLING:CALLED")
	talk := fs.Duration("talk", 10*time.Second, "hang up a call placed with -call after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := 0
	for _, b := range []bool{*device != "", *usePty, *listen != ""} {
		if b {
			given++
		}
	}
	if given != 1 {
		return errors.New("give exactly one of -device PATH, -pty and -listen PATH")
	}
	typ, err := isdn.ParseSpanType(*spanType)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	busyList := strings.Split(*busy, ",")
	xcfg := exchange.Config{Type: typ, Log: log, Plan: func(called string) exchange.Reply {
		if slices.Contains(busyList, called) {
			return exchange.Reply{Reject: 17}
		}
		return exchange.Reply{Ring: *ring}
	}}
	var from, to string
	if *call != "" {
		var ok bool
		if from, to, ok = strings.Cut(*call, ":"); !ok {
			return fmt.Errorf("-call %q: want CALLING:CALLED", *call)
		}
	}
	serve := func(c card.Card) error {
		x, err := exchange.New(c, xcfg)
		if err != nil {
			return err
		}
		if *call != "" {
			go placeCall(ctx, x, log, from, to, *talk)
		}
		if err := x.Run(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	port := func(rw io.ReadWriteCloser) error {
		c := card.NewSerial(rw, log)
		defer c.Close()
		return serve(c)
	}
	switch {
	case *listen != "":
		return serial.ServeUnix(ctx, stdout, *listen, log, port)
	case *usePty:
		return serial.ServePTY(ctx, stdout, port)
	}
	c, err := card.OpenSerial(serial.Config{Device: *device, Baud: *baud}, log)
	if err != nil {
		return err
	}
	defer c.Close()
	return serve(c)
}

func placeCall(ctx context.Context, x *exchange.Exchange, log *slog.Logger, from, to string, talk time.Duration) {
	if err := x.WaitReady(ctx); err != nil {
		return
	}
	c, err := x.Dial(ctx, exchange.DialParams{Calling: from, Called: to})
	if err != nil {
		log.Error("placing call", "err", err)
		return
	}
	if err := c.Wait(ctx, exchange.Connected); err != nil {
		log.Error("call not answered", "err", err)
		return
	}
	select {
	case <-time.After(talk):
	case <-ctx.Done():
		return
	}
	if err := c.Hangup(ctx, 16); err != nil {
		log.Error("hanging up", "err", err)
	}
	log.Info("call done", "heard_seconds", float64(len(c.Heard()))/exchange.SampleRate)
}
