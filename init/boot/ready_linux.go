package boot

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// procNetTables are the socket tables Listening reads, with whether each
// is UDP's.
var procNetTables = []struct {
	name string
	udp  bool
}{{"udp", true}, {"udp6", true}, {"tcp", false}, {"tcp6", false}}

// listeningIn reports whether any socket table under dir (/proc/net)
// shows a socket waiting for peers.
func listeningIn(dir string) bool {
	for _, t := range procNetTables {
		b, err := os.ReadFile(filepath.Join(dir, t.name))
		if err == nil && Listening(b, t.udp) {
			return true
		}
	}
	return false
}

// waitListening waits until a socket table under dir shows a listening
// socket, ctx ends or max has passed, polling every step; it reports
// whether a socket was seen.
func waitListening(ctx context.Context, dir string, max, step time.Duration) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		if listeningIn(dir) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
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
