package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/line"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func TestArgs(t *testing.T) {
	for _, args := range [][]string{{}, {"-pty", "-device", "/dev/x"}, {"-pty", "-type", "bri"}, {"-pty", "-call", "123"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := run(ctx, io.Discard, args); err == nil {
			t.Errorf("%q accepted", args)
		}
		cancel()
	}
}

type calls struct{ got chan *q931.Call }

func (c calls) Event(now time.Time, ev isdn.Event) {
	if ev.Call != nil && ev.Call.Kind == q931.EventIncoming {
		c.got <- ev.Call.Call
	}
}
func (calls) Audio(time.Time, uint8, []byte) {}
func (calls) Layer1(time.Time, card.L1)      {}
func (calls) Media(time.Time)                {}

// The command places its call to a user side that opens the printed path
// as its card: a pty, or a unix socket as QEMU would connect.
func TestCallToCard(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "isdn.sock")
	tests := []struct {
		name string
		args []string
		open func(path string) (card.Card, error)
	}{
		{"pty", []string{"-pty"}, func(path string) (card.Card, error) {
			return card.OpenSerial(serial.Config{Device: path, Baud: 115200}, nil)
		}},
		{"unix socket", []string{"-listen", sock}, func(path string) (card.Card, error) {
			conn, err := net.Dial("unix", path)
			if err != nil {
				return nil, err
			}
			return card.NewSerial(conn, nil), nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, pw, append(tt.args, "-type", "bri-ptp", "-call", "030123:7001"))
			}()
			t.Cleanup(func() { cancel(); <-done })
			path, err := bufio.NewReader(pr).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			c, err := tt.open(strings.TrimSpace(path))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := line.New(line.Config{Card: c, Endpoint: isdn.Config{Type: isdn.BRIPointToPoint}})
			if err != nil {
				t.Fatal(err)
			}
			h := calls{got: make(chan *q931.Call, 1)}
			go func() { _ = l.Run(ctx, h) }()
			select {
			case q := <-h.got:
				if q.Called.Digits != "7001" || q.Calling.Digits != "030123" {
					t.Errorf("call from %q to %q", q.Calling.Digits, q.Called.Digits)
				}
			case <-ctx.Done():
				t.Fatal("no call arrived")
			}
		})
	}
}
