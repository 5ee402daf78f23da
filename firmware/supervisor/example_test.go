package supervisor_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/twinpbx/twinpbx/firmware/supervisor"
	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// How `twinpbx run` uses the package: the first process supervises, the
// re-executed child (Supervised) does the work and kicks the watchdog its
// parent hosts on the simulated board.
func Example() {
	ctx := context.Background()
	dataDir := "twinpbx-data"
	if !supervisor.Supervised() {
		err := supervisor.Run(ctx, supervisor.Config{
			Args:            os.Args[1:], // the same `run ...` again
			Dir:             dataDir,
			WatchdogTimeout: 5 * time.Second, // the sim board's; zero on real boards
			OnChildExit: func(code int, signal string) {
				// Remove the VIP the dead node left on the LAN interface.
			},
		})
		os.Exit(supervisor.ExitCode(err))
	}

	// The child: the hosted watchdog, or the board's own.
	var wd watchdog.Watchdog
	k, err := supervisor.ChildWatchdog()
	switch {
	case err == nil:
		wd = k
	case errors.Is(err, supervisor.ErrNoWatchdog):
		// open the board's /dev/watchdog instead
	default:
		slog.Error("supervisor watchdog", "err", err)
		os.Exit(supervisor.ExitConfigError)
	}
	if wd != nil {
		fence := watchdog.NewFence(wd, func() bool { return true }, watchdog.FenceConfig{})
		_ = fence // run it; on a deliberate shutdown call wd.Close()
	}
}
