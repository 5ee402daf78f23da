package control

import (
	"errors"
	"io"
	"net/http"
	"os"
	"syscall"

	"github.com/twinpbx/twinpbx/firmware/supervisor"
)

// ErrNotSupervised is the answer to a restart request of a twinpbx that
// runs without its supervisor: nothing would start it again.
var ErrNotSupervised = errors.New("this twinpbx runs without its supervisor, which would start it again: restart it by hand")

// Restarter is implemented by an appliance that restarts its PBX itself.
// An appliance without it is restarted by ending the worker process with
// SIGTERM (its own clean shutdown: store closed, VIP handed over), after
// which its supervisor starts it again.
type Restarter interface {
	Restart() error
}

// restarter is how the process restarts itself when the appliance is no
// Restarter; tests replace it.
var restarter = struct {
	can func() bool
	do  func() error
}{
	can: supervisor.Supervised,
	do:  func() error { return syscall.Kill(os.Getpid(), syscall.SIGTERM) },
}

// restartHandler answers POST /restart: the answer is written first, then
// the PBX stops and its supervisor starts it again.
func restartHandler(a Appliance) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		do := restarter.do
		if rs, ok := a.(Restarter); ok {
			do = rs.Restart
		} else if !restarter.can() {
			http.Error(w, ErrNotSupervised.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "restarting the PBX\n")
		_ = http.NewResponseController(w).Flush()
		if err := do(); err != nil {
			// The status is out already; the failure is added to the answer.
			_, _ = io.WriteString(w, "restart failed: "+err.Error()+"\n")
		}
	}
}

// Restart asks the running twinpbx to restart its PBX and returns its
// answer. The PBX is unreachable for a moment afterwards.
func (c *Client) Restart() (string, error) {
	return c.Pair("restart")
}
