package serial

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// The far end of a serial port, for the simulators that stand in for a
// device on the other side of a cable (the relay board, the ISDN line):
// a box under test opens the pseudo-terminal's path as its serial port,
// or QEMU connects a guest's port to the unix socket (-serial unix:PATH).

// ServePTY opens a pseudo-terminal, prints the path of its terminal side
// to out and runs serve on the controlling side until serve returns; ctx
// ending closes the line, which ends serve.
func ServePTY(ctx context.Context, out io.Writer, serve func(io.ReadWriteCloser) error) error {
	ptmx, tty, err := openPTY(out)
	if err != nil {
		return err
	}
	defer tty.Close()
	defer ptmx.Close()
	stop := context.AfterFunc(ctx, func() { _ = ptmx.Close() })
	defer stop()
	if err := serve(ptmx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// ServeUnix listens on a unix socket at path, prints path to out and runs
// serve on each connection, one after the other (a serial line has one
// peer), until ctx ends. A connection's error is logged, not returned.
func ServeUnix(ctx context.Context, out io.Writer, path string, log *slog.Logger, serve func(io.ReadWriteCloser) error) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	defer ln.Close()
	fmt.Fprintln(out, path)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting on %s: %w", path, err)
		}
		log.Info("serial line connected")
		stopConn := context.AfterFunc(ctx, func() { _ = c.Close() })
		if err := serve(c); err != nil && ctx.Err() == nil {
			log.Warn("serial line", "err", err)
		}
		stopConn()
		_ = c.Close()
		log.Info("serial line disconnected")
		if ctx.Err() != nil {
			return nil
		}
	}
}

// openPTY opens a pseudo-terminal and prints its terminal side's path to
// out. It returns the controlling side in non-blocking mode, so that
// closing it ends a read in progress (pty.Open hands it out blocking),
// and the terminal side, which the caller keeps open while it serves so
// that the line does not hang up between two openings by the box.
func openPTY(out io.Writer) (ptmx, tty *os.File, err error) {
	blocking, tty, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	defer blocking.Close()
	fd, err := unix.Dup(int(blocking.Fd()))
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		tty.Close()
		return nil, nil, fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	fmt.Fprintln(out, tty.Name())
	return os.NewFile(uintptr(fd), blocking.Name()), tty, nil
}
