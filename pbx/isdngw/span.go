package isdngw

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/serial"
)

// SimDevice is the serial device name of a span on the exchange emulator
// (the simulated board's).
const SimDevice = "sim"

// RunSpan runs a gateway (cfg) on a span's card until ctx ends: the
// card on port, or, when port.Device is SimDevice, the exchange emulator
// on an in-memory line, so a box without ISDN hardware has a working PSTN
// (it answers every call after one second of ringing). sim, when not nil,
// is told the emulator once it exists, to place calls to the box.
func RunSpan(ctx context.Context, port serial.Config, cfg Config, sim func(*exchange.Exchange)) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if port.Device != SimDevice {
		c, err := card.OpenSerial(port, cfg.Log)
		if err != nil {
			return err
		}
		defer c.Close()
		g, err := New(c, cfg)
		if err != nil {
			return err
		}
		return g.Run(ctx)
	}
	netSide, box := card.Pipe()
	defer box.Close()
	x, err := exchange.New(netSide, exchange.Config{Type: cfg.Type, Span: cfg.Span, Log: cfg.Log.With("part", "exchange emulator")})
	if err != nil {
		return fmt.Errorf("starting the simulated ISDN line: %w", err)
	}
	g, err := New(box, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := x.Run(ctx); err != nil && ctx.Err() == nil {
			cfg.Log.Error("simulated ISDN exchange stopped", "err", err)
		}
	}()
	if sim != nil {
		sim(x)
	}
	err = g.Run(ctx)
	cancel()
	wg.Wait()
	return err
}
