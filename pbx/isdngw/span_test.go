package isdngw

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/serial"
)

// On the sim device the gateway gets the exchange emulator as its line:
// a call from the PBX (sipp) is answered by it.
func TestRunSpanSim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	gwAt, pbxAt := netip.AddrPortFrom(lo, freePort(t)), netip.AddrPortFrom(lo, freePort(t))
	xs := make(chan *exchange.Exchange, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunSpan(ctx, serial.Config{Device: SimDevice}, Config{Listen: gwAt, PBX: pbxAt, Type: isdn.BRIPointToMultipoint},
			func(x *exchange.Exchange) { xs <- x })
	}()
	t.Cleanup(func() { cancel(); <-done })
	x := <-xs
	if err := x.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	s := startSipp(t, pbxAt, "-sn", "uac", "-s", "110", "-d", "500", gwAt.String())
	c := <-x.Placed()
	if err := c.Wait(ctx, exchange.Connected); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 0)
}

func TestRunSpanNoPort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	err := RunSpan(context.Background(), serial.Config{Device: "/nonexistent/ttyISDN"},
		Config{Listen: netip.AddrPortFrom(lo, 1), PBX: netip.AddrPortFrom(lo, 2), Type: isdn.PRI}, nil)
	if err == nil || !strings.Contains(err.Error(), "ttyISDN") {
		t.Errorf("RunSpan on a missing port: %v", err)
	}
}
