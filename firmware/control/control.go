// Package control is the local control channel of a running appliance: a
// small HTTP API on a unix socket in the data folder, used by the twinpbx
// commands (status, cdr, config, voicemail, switchover, maintenance, the
// rolling update) and by the console. The socket is created mode 0600,
// so only the box's administrator reaches it.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SocketName is the control socket's file name inside the data folder.
const SocketName = "twinpbx.sock"

// Appliance is what the control API asks of the running appliance. Owned
// here; the appliance implements it.
type Appliance interface {
	// Status returns a JSON-encodable snapshot.
	Status() any
	// ExportCDRs writes the CDRs between from and to (zero: unbounded) as CSV.
	ExportCDRs(w io.Writer, from, to time.Time) error
	// ExportConfig returns the current config as YAML.
	ExportConfig() ([]byte, error)
	// ImportConfig validates and applies a config; it returns the new
	// version and whether a restart is needed for all of it to apply.
	ImportConfig(yaml []byte) (version uint64, restart bool, err error)
}

// Pair is implemented by an appliance that runs as one of a twin pair;
// the control API then also takes switchover and maintenance requests.
type Pair interface {
	// Switchover hands service to the twin gracefully (active box only).
	Switchover(ctx context.Context) error
	// SetMaintenance keeps the box from becoming active, or ends that.
	SetMaintenance(on bool) error
}

// Roller is implemented by a twin box that can run a rolling update of
// the pair (firmware/rollout): POST /rollout.
type Roller interface {
	// StartRollout begins rolling the pair to the bundle file at path on
	// this box; the status follows it.
	StartRollout(path string) error
}

// RolloutRequest is the body of POST /rollout.
type RolloutRequest struct {
	// Bundle is the bundle file's absolute path on the box.
	Bundle string `json:"bundle"`
}

// Voicemail is implemented by an appliance that keeps mailboxes in its
// store: GET /voicemail?box= and GET /voicemail/{box}/{id}, so that the
// messages can be listed and exported while the box runs.
type Voicemail interface {
	// VoicemailList returns the messages of mailbox box, or of every
	// mailbox when box is "", JSON-encodable.
	VoicemailList(box string) (any, error)
	// VoicemailWAV writes one message as a WAV file; the error wraps
	// ErrNotFound when the mailbox has no such message.
	VoicemailWAV(w io.Writer, box, id string) error
}

// ErrNotFound is wrapped by an appliance's answer about something it does
// not have; the API answers it with 404.
var ErrNotFound = errors.New("not found")

// ErrNotPair is the answer of a standalone box to a pair request.
var ErrNotPair = errors.New("this box is not one of a twin pair")

// ImportResult is the answer to a config import.
type ImportResult struct {
	Version uint64 `json:"version"`
	Restart bool   `json:"restart"`
}

// Serve answers the control API on dataDir's socket until ctx ends. A stale
// socket left by a killed process is replaced; a live one is an error.
func Serve(ctx context.Context, dataDir string, a Appliance, log *slog.Logger) error {
	path := filepath.Join(dataDir, SocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another twinpbx is already running on %s", dataDir)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("opening the control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restricting the control socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: Handler(a), ReadHeaderTimeout: 5 * time.Second}
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
	return fmt.Errorf("serving the control socket: %w", err)
}

// Handler is the HTTP API: GET /status, GET /cdr?from=&to= (RFC 3339),
// GET /config, PUT /config, POST /restart (restart.go), GET /voicemail
// and GET /voicemail/{box}/{id} for a box with mailboxes, and for a twin
// pair POST /switchover, POST /maintenance/on|off and POST /rollout.
func Handler(a Appliance) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rollout", func(w http.ResponseWriter, r *http.Request) {
		roller, ok := a.(Roller)
		if !ok {
			http.Error(w, ErrNotPair.Error(), http.StatusConflict)
			return
		}
		var req RolloutRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "want a JSON body with the bundle's path: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !filepath.IsAbs(req.Bundle) {
			http.Error(w, fmt.Sprintf("bundle path %q: want an absolute path on the box", req.Bundle), http.StatusBadRequest)
			return
		}
		if err := roller.StartRollout(req.Bundle); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "rolling update started\n")
	})
	mux.HandleFunc("POST /restart", restartHandler(a))
	pair, isPair := a.(Pair)
	mux.HandleFunc("POST /switchover", func(w http.ResponseWriter, r *http.Request) {
		if !isPair {
			http.Error(w, ErrNotPair.Error(), http.StatusConflict)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		if err := pair.Switchover(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "handed over\n")
	})
	mux.HandleFunc("POST /maintenance/{state}", func(w http.ResponseWriter, r *http.Request) {
		if !isPair {
			http.Error(w, ErrNotPair.Error(), http.StatusConflict)
			return
		}
		state := r.PathValue("state")
		if state != "on" && state != "off" {
			http.Error(w, "want on or off", http.StatusBadRequest)
			return
		}
		if err := pair.SetMaintenance(state == "on"); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "maintenance "+state+"\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		gc := r.URL.Query().Get("gc") == "1"
		if gc {
			// For measuring memory: the process's live heap is then
			// what is alive now, not at the last collection, and
			// what it freed is given back to the system, so that its
			// resident size is what it holds (a box that allocates
			// little may otherwise keep its start-up garbage until the
			// runtime's two-minute collection).
			debug.FreeOSMemory()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
		if gc {
			// The status and its encoding (every binding, megabytes
			// on a box with thousands of phones) are garbage now:
			// given back too, before the answer is complete, so that
			// a resident size read after it is not the answer's.
			debug.FreeOSMemory()
		}
	})
	mux.HandleFunc("GET /cdr", func(w http.ResponseWriter, r *http.Request) {
		from, err1 := parseTime(r.URL.Query().Get("from"))
		to, err2 := parseTime(r.URL.Query().Get("to"))
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/csv")
		if err := a.ExportCDRs(w, from, to); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	vm, hasVoicemail := a.(Voicemail)
	mux.HandleFunc("GET /voicemail", func(w http.ResponseWriter, r *http.Request) {
		if !hasVoicemail {
			http.Error(w, "this box keeps no mailboxes", http.StatusNotFound)
			return
		}
		list, err := vm.VoicemailList(r.URL.Query().Get("box"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /voicemail/{box}/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !hasVoicemail {
			http.Error(w, "this box keeps no mailboxes", http.StatusNotFound)
			return
		}
		// Whole before the first byte: an error is still an error
		// status, not a cut file.
		var b bytes.Buffer
		if err := vm.VoicemailWAV(&b, r.PathValue("box"), r.PathValue("id")); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrNotFound) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		_, _ = b.WriteTo(w)
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		b, err := a.ExportConfig()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("PUT /config", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v, restart, err := a.ImportConfig(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ImportResult{Version: v, Restart: restart})
	})
	return mux
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339, e.g. 2026-11-24T08:00:00Z", s)
	}
	return t, nil
}

// ErrNotRunning means no appliance answers on the data folder's socket.
var ErrNotRunning = errors.New("twinpbx is not running on this data folder")

// Client talks to a running appliance.
type Client struct {
	hc *http.Client
}

// Dial returns a client for the appliance on dataDir, or ErrNotRunning.
func Dial(dataDir string) (*Client, error) {
	path := filepath.Join(dataDir, SocketName)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (c *Client) do(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://twinpbx"+path, body)
	if err != nil {
		return nil, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the running twinpbx (%s %s): %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return nil, errors.New(strings.TrimSpace(string(msg)))
	}
	return res, nil
}

// Status copies the status JSON to w.
func (c *Client) Status(w io.Writer) error {
	return c.copy(w, "GET", "/status", nil)
}

// StatusAfterGC is Status after a garbage collection in the running
// process, so that its live heap figure is current.
func (c *Client) StatusAfterGC(w io.Writer) error {
	return c.copy(w, "GET", "/status?gc=1", nil)
}

// CDRs copies the CSV export to w.
func (c *Client) CDRs(w io.Writer, from, to time.Time) error {
	q := ""
	if !from.IsZero() || !to.IsZero() {
		q = "?"
		if !from.IsZero() {
			q += "from=" + from.UTC().Format(time.RFC3339) + "&"
		}
		if !to.IsZero() {
			q += "to=" + to.UTC().Format(time.RFC3339)
		}
	}
	return c.copy(w, "GET", "/cdr"+strings.TrimSuffix(q, "&"), nil)
}

// Pair sends a pair request ("switchover", "maintenance/on" or
// "maintenance/off") and returns the box's answer.
func (c *Client) Pair(what string) (string, error) {
	res, err := c.do("POST", "/"+what, nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return strings.TrimSpace(string(b)), err
}

// StartRollout asks the box to roll the pair to the bundle file at path
// (made absolute here) and returns its answer.
func (c *Client) StartRollout(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("bundle path: %w", err)
	}
	body, _ := json.Marshal(RolloutRequest{Bundle: abs})
	res, err := c.do("POST", "/rollout", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return strings.TrimSpace(string(b)), err
}

// Voicemails returns the JSON list of the messages of mailbox box, of
// every mailbox when box is "".
func (c *Client) Voicemails(box string) ([]byte, error) {
	res, err := c.do("GET", "/voicemail?box="+url.QueryEscape(box), nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the list of messages: %w", err)
	}
	return b, nil
}

// VoicemailWAV copies one message, as a WAV file, to w.
func (c *Client) VoicemailWAV(w io.Writer, box, id string) error {
	return c.copy(w, "GET", "/voicemail/"+url.PathEscape(box)+"/"+url.PathEscape(id), nil)
}

// Config copies the current config YAML to w.
func (c *Client) Config(w io.Writer) error {
	return c.copy(w, "GET", "/config", nil)
}

// ImportConfig sends a config to the running appliance.
func (c *Client) ImportConfig(yaml []byte) (ImportResult, error) {
	res, err := c.do("PUT", "/config", strings.NewReader(string(yaml)))
	if err != nil {
		return ImportResult{}, err
	}
	defer res.Body.Close()
	var r ImportResult
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return ImportResult{}, fmt.Errorf("reading the import result: %w", err)
	}
	return r, nil
}

func (c *Client) copy(w io.Writer, method, path string, body io.Reader) error {
	res, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, err = io.Copy(w, res.Body)
	return err
}
