package twin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ControlSocket is the file name, in the data folder, of the socket the
// pair's administrative requests (switchover, maintenance) arrive on. It is
// created mode 0600 like the appliance's control socket.
const ControlSocket = "twin.sock"

// ErrControlNotRunning means no box of a pair runs on the data folder.
var ErrControlNotRunning = errors.New("no twin pair box is running on this data folder")

// Controller is what the control socket drives (Node has it).
type Controller interface {
	Switchover(ctx context.Context) error
	SetMaintenance(on bool) error
}

// controlHandler answers POST /switchover and POST /maintenance/on|off.
func controlHandler(c Controller) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /switchover", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		if err := c.Switchover(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "handed over\n")
	})
	mux.HandleFunc("POST /maintenance/{state}", func(w http.ResponseWriter, r *http.Request) {
		var on bool
		switch r.PathValue("state") {
		case "on":
			on = true
		case "off":
		default:
			http.Error(w, "want on or off", http.StatusBadRequest)
			return
		}
		if err := c.SetMaintenance(on); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "maintenance %s\n", r.PathValue("state"))
	})
	return mux
}

// ServeControl answers the pair's control requests on dataDir's socket
// until ctx ends.
func ServeControl(ctx context.Context, dataDir string, c Controller, log *slog.Logger) error {
	path := filepath.Join(dataDir, ControlSocket)
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("another twinpbx is already running on %s", dataDir)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("opening the pair's control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restricting the pair's control socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: controlHandler(c), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	_ = os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving the pair's control socket: %w", err)
}

// Request sends one control request ("switchover", "maintenance/on",
// "maintenance/off") to the box running on dataDir and returns its answer.
func Request(ctx context.Context, dataDir, what string) (string, error) {
	path := filepath.Join(dataDir, ControlSocket)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://twin/"+what, nil)
	if err != nil {
		return "", err
	}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", ErrControlNotRunning
		}
		return "", fmt.Errorf("asking the running twinpbx (%s): %w", what, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	msg := strings.TrimSpace(string(body))
	if res.StatusCode/100 != 2 {
		return "", errors.New(msg)
	}
	return msg, nil
}
