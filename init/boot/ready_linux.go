package boot

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"
)

// listenPipe passes twinpbx's standard output on to out (init's own, the
// console) through a pipe and closes heard when twinpbx says it listens
// (passOn). It returns the pipe's end for twinpbx; without a pipe it
// returns nil (runChild then gives twinpbx init's own standard output,
// and does not close it) and closes heard at once.
func listenPipe(log *slog.Logger, out io.Writer, heard chan struct{}) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		log.Error("no pipe for twinpbx's output: the consoles start at once", "err", err)
		close(heard)
		return nil
	}
	go func() {
		defer r.Close()
		if err := passOn(r, out, heard); err != nil {
			log.Error("twinpbx's output is no longer shown", "err", err)
			_, _ = io.Copy(io.Discard, r) // twinpbx must never block on it
		}
	}()
	return w
}

// waitHeard waits until heard is closed, max has passed or ctx ends, and
// reports whether heard was closed.
func waitHeard(ctx context.Context, heard <-chan struct{}, max time.Duration) bool {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-heard:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// loadDataModules loads the data file system's modules (SplitDataModules)
// when a data partition is to be mounted (needed), and says so when it
// skips them.
func loadDataModules(log *slog.Logger, mods []string, needed bool) {
	if len(mods) == 0 {
		return
	}
	if !needed {
		log.Info("no data partition: its file system modules are not loaded", "modules", mods)
		return
	}
	loadModules(log, mods)
}
