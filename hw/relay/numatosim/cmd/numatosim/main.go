// Command numatosim is a simulated Numato USB relay board for the host side
// of the QEMU machine (or any test that wants a board on a serial line).
//
// With -listen it serves a unix socket that QEMU connects its serial port
// to (qemu ... -serial unix:/tmp/relay.sock); with -pty it opens a
// pseudo-terminal pair and prints the terminal's path, which a serial
// program can open as its port. It logs every relay change.
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
	"syscall"

	"github.com/twinpbx/twinpbx/hw/relay/numatosim"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "numatosim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout io.Writer, args []string) error {
	fs := flag.NewFlagSet("numatosim", flag.ContinueOnError)
	listen := fs.String("listen", "", "serve the board on this unix socket path")
	usePty := fs.Bool("pty", false, "serve the board on a new pseudo-terminal and print its path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*listen == "") == !*usePty {
		return errors.New("give exactly one of -listen PATH and -pty")
	}
	board := &numatosim.Board{}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	serve := func(rw io.ReadWriteCloser) error { return board.Serve(ctx, &logged{rw, board, log}) }
	if *usePty {
		return serial.ServePTY(ctx, stdout, serve)
	}
	return serial.ServeUnix(ctx, stdout, *listen, log, serve)
}

// logged logs the board's relay states whenever it has answered.
type logged struct {
	io.ReadWriter
	board *numatosim.Board
	log   *slog.Logger
}

func (l *logged) Write(b []byte) (int, error) {
	n, err := l.ReadWriter.Write(b)
	var on []int
	for i := range numatosim.Relays {
		if l.board.Relay(i) {
			on = append(on, i)
		}
	}
	l.log.Debug("board answered", "relays_on", on)
	return n, err
}
