package supervisor

import (
	"errors"
	"fmt"
	"time"
)

// State is a snapshot of the supervisor, for the control socket and the
// console.
type State struct {
	// PID of the running child; 0 while none runs.
	PID int
	// Started is when the running child was started.
	Started time.Time
	// Starts counts children started; Restarts is Starts-1 once the first
	// has started.
	Starts   int
	Restarts int
	// WatchdogResets counts children killed by the hosted watchdog.
	WatchdogResets int
	// WatchdogArmed is true while the running child's watchdog is armed.
	WatchdogArmed bool
	// LastKick is when the running child last kicked its watchdog.
	LastKick time.Time
	// Backoff is the delay before the next start while the supervisor
	// waits to restart a child; zero otherwise.
	Backoff time.Duration
	// Stopping is true once a stop was asked for (signal or context).
	Stopping bool
	// Exits are the last few exits, oldest first.
	Exits []Exit
}

// Exit describes how one child ended.
type Exit struct {
	PID int
	At  time.Time
	// Ran is how long the child ran.
	Ran time.Duration
	// Code is the exit status, -1 when a signal ended the child.
	Code int
	// Signal names the signal that ended the child ("SIGKILL"), empty
	// when it exited.
	Signal string
	// WatchdogReset is true when the hosted watchdog killed the child.
	WatchdogReset bool
	// Reason says it in words, for logs and the console.
	Reason string
}

// ExitError is returned by Run when the last child ended with something
// other than exit status 0: a code in Config.NoRestart, or a failure after
// a stop was asked for.
type ExitError struct {
	Exit Exit
	// NoRestart is true when the supervisor stopped because of the code.
	NoRestart bool
}

func (e *ExitError) Error() string {
	if e.NoRestart {
		return fmt.Sprintf("child %s; not restarting", e.Exit.Reason)
	}
	return "child " + e.Exit.Reason
}

// ExitCode is the status the supervisor process should exit with to pass
// on its child's: the child's code, or 128+signal number when a signal
// ended it (as shells do).
func (e *ExitError) ExitCode() int {
	if e.Exit.Code >= 0 {
		return e.Exit.Code
	}
	if n := signalNumber(e.Exit.Signal); n > 0 {
		return 128 + n
	}
	return 1
}

// ExitCode maps Run's result to a process exit status: 0 for nil, the
// child's status for an *ExitError, 1 for any other error.
//
//	err := sup.Run(ctx)
//	if err != nil { slog.Error("supervisor", "err", err) }
//	os.Exit(supervisor.ExitCode(err))
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 1
}
