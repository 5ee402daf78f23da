package isdngw

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
)

// The scenarios of the end-to-end tests serve here too.
var scenarios = filepath.Join("..", "..", "e2e", "testdata", "sipp")

var phone = config.Extension{Number: "201", Secret: "secret-201-isdn"}

// startPBX runs the real PBX in this process with one extension, the
// gateway as an isdn trunk whose DID 4930555 rings 201, and the route
// "0." out over it.
func startPBX(t *testing.T, gw netip.AddrPort) (netip.AddrPort, *pbxtest.Store) {
	t.Helper()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	low := int(freePort(t)) &^ 1
	cfg := &config.Config{
		Node: config.Node{Name: "t"},
		SIP: config.SIP{Listen: []string{"udp:" + addr.String()},
			RTPPorts: strconv.Itoa(low) + "-" + strconv.Itoa(low+9)},
		Extensions: []config.Extension{phone},
		Trunks: []config.TrunkLine{{Name: "isdn", Type: config.LineISDN, Host: gw.String(),
			DIDs: []config.DID{{Number: "4930555", Extension: phone.Number}}}},
		Routes: []config.Route{{Pattern: "0.", Strip: 1, Trunks: []string{"isdn"}}},
	}
	st := pbxtest.NewStore()
	p, err := pbx.New(pbx.Options{Config: cfg, Store: st, AuthKey: make([]byte, 32),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func([]pbx.Listener) { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("PBX: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("PBX did not start: %v", err)
	}
	return addr, st
}

// The whole way in: the exchange calls the box's DDI, the PBX rings the
// registered phone (sipp, echoing RTP), audio crosses both ways (the
// exchange hears its own tone back through gateway, PBX relay and phone),
// the exchange hangs up, and the PBX writes a CDR naming the trunk.
func TestExchangeToPhone(t *testing.T) {
	gwAt := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	pbxAt, st := startPBX(t, gwAt)
	b := startBed(t, isdn.BRIPointToMultipoint, nil, func(c *Config) { c.Listen, c.PBX = gwAt, pbxAt })

	phoneAt := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	reg := startSipp(t, phoneAt, "-sf", filepath.Join(scenarios, "register.xml"), "-s", phone.Number,
		"-au", phone.Number, "-ap", phone.Secret, "-key", "expires", "300", pbxAt.String())
	reg.wait(t, 0)
	answer := startSipp(t, phoneAt, "-sf", filepath.Join(scenarios, "uas.xml"), "-s", phone.Number, "-rtp_echo")
	waitFor(t, b.ctx, "the phone to listen", func() bool { return bound(phoneAt) })

	c, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "030123456", Called: "4930555"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(b.ctx, exchange.Connected); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b.ctx, "audio back from the phone", func() bool { return len(c.Heard()) >= 8000 })
	heard := c.Heard()
	if sh := exchange.Share(heard[len(heard)-2400:], 1000); sh < 0.8 {
		t.Errorf("the exchange's tone came back at share %.2f", sh)
	}
	if err := c.Hangup(b.ctx, 16); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(b.ctx, exchange.Released); err != nil {
		t.Fatal(err)
	}
	answer.wait(t, 0)
	var r cdr.Record
	waitFor(t, b.ctx, "the CDR", func() bool {
		var ok bool
		r, ok = st.CDR(func(r cdr.Record) bool { return r.Callee == "4930555" || r.Callee == phone.Number })
		return ok
	})
	if r.Disp != cdr.Answered || r.Trunk != "isdn" || r.Caller != "030123456" || r.HangupBy != "caller" {
		t.Errorf("CDR %+v", r)
	}
}

// The whole way out: the phone dials 0 110, the PBX routes it over the
// isdn trunk, the exchange rings and answers, the phone hangs up, and the
// PBX writes a CDR.
func TestPhoneToExchange(t *testing.T) {
	gwAt := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	pbxAt, st := startPBX(t, gwAt)
	b := startBed(t, isdn.BRIPointToMultipoint, func(string) exchange.Reply {
		return exchange.Reply{Ring: 300 * time.Millisecond}
	}, func(c *Config) { c.Listen, c.PBX = gwAt, pbxAt })
	call := startSipp(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)),
		"-sf", filepath.Join(scenarios, "uac.xml"), "-s", "0110", "-au", phone.Number, "-ap", phone.Secret,
		"-auth_uri", "0110@"+pbxAt.String(), "-key", "caller", phone.Number, "-key", "caller_name", "Desk",
		"-d", "1500", pbxAt.String())
	c := b.placed(t)
	if c.Called != "110" {
		t.Errorf("the exchange was called at %q", c.Called)
	}
	if err := c.Wait(b.ctx, exchange.Connected); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(b.ctx, exchange.Released); err != nil {
		t.Fatal(err)
	}
	if c.Cause() != 16 {
		t.Errorf("cleared with cause %d", c.Cause())
	}
	call.wait(t, 0)
	var r cdr.Record
	waitFor(t, b.ctx, "the CDR", func() bool {
		var ok bool
		r, ok = st.CDR(func(r cdr.Record) bool { return r.Caller == phone.Number })
		return ok
	})
	if r.Disp != cdr.Answered || r.Trunk != "isdn" || r.HangupBy != "caller" {
		t.Errorf("CDR %+v", r)
	}
}
