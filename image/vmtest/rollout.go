package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Helpers of the rolling-update VM test: plugging an update stick into a
// running machine (QMP hot-plug) and watching the VIP answer.

// HotplugArgs are the QEMU arguments that let a stick be plugged into the
// machine later: a QMP socket and a free PCIe root port.
func HotplugArgs(qmpSocket string) []string {
	return []string{
		"-qmp", "unix:" + qmpSocket + ",server=on,wait=off",
		"-device", "pcie-root-port,id=stickport,chassis=9",
	}
}

// PlugStick plugs the file at path into the machine whose QMP socket is
// qmpSocket, as a read-only virtio disk on the port of HotplugArgs: an
// update stick put into a running box.
func PlugStick(ctx context.Context, qmpSocket, path string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", qmpSocket)
	if err != nil {
		return fmt.Errorf("connecting to QMP: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		return fmt.Errorf("reading QMP's greeting: %w", err)
	}
	cmds := []map[string]any{
		{"execute": "qmp_capabilities"},
		{"execute": "blockdev-add", "arguments": map[string]any{
			"driver": "raw", "node-name": "stick", "read-only": true,
			"file": map[string]any{"driver": "file", "filename": path, "read-only": true}}},
		{"execute": "device_add", "arguments": map[string]any{
			"driver": "virtio-blk-pci", "id": "stickdev", "drive": "stick", "bus": "stickport"}},
	}
	for _, cmd := range cmds {
		b, _ := json.Marshal(cmd)
		if _, err := c.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd["execute"], err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("QMP %s: %w", cmd["execute"], err)
			}
			var ans struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if json.Unmarshal(line, &ans) != nil {
				continue
			}
			if ans.Error != nil {
				return fmt.Errorf("QMP %s: %s", cmd["execute"], ans.Error.Desc)
			}
			if ans.Return != nil {
				break
			}
			// An event: read on.
		}
	}
	return nil
}

// VIPWatch asks the VIP with SIP OPTIONS from a phone's address every
// interval and records who answered when.
type VIPWatch struct {
	conn   *net.UDPConn
	target *net.UDPAddr
	every  time.Duration

	mu      sync.Mutex
	sent    map[string]time.Time // Call-ID → when sent
	answers []VIPAnswer
	stop    chan struct{}
	done    sync.WaitGroup
}

// VIPAnswer is one answer: when, and the answering box's Server header.
type VIPAnswer struct {
	At     time.Time
	Server string
}

// WatchVIP starts a VIPWatch; conn is a UDP socket bound to the phone's
// address (in the pair's network namespace). Stop ends it.
func WatchVIP(conn *net.UDPConn, vip string, every time.Duration) (*VIPWatch, error) {
	target, err := net.ResolveUDPAddr("udp", vip)
	if err != nil {
		return nil, fmt.Errorf("watching the VIP: %w", err)
	}
	w := &VIPWatch{conn: conn, target: target, every: every, sent: map[string]time.Time{}, stop: make(chan struct{})}
	w.done.Add(2)
	go w.send()
	go w.receive()
	return w, nil
}

func (w *VIPWatch) send() {
	defer w.done.Done()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		id := token()
		w.mu.Lock()
		w.sent[id] = time.Now()
		w.mu.Unlock()
		_, _ = w.conn.WriteToUDP(OptionsRequest(w.conn.LocalAddr().String(), w.target.String(), id), w.target)
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *VIPWatch) receive() {
	defer w.done.Done()
	buf := make([]byte, 65535)
	for {
		n, _, err := w.conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed by Stop
		}
		at := time.Now()
		id := callIDOf(buf[:n])
		w.mu.Lock()
		_, ok := w.sent[id]
		delete(w.sent, id)
		w.mu.Unlock()
		if !ok {
			continue
		}
		server, err := AnswerServer(buf[:n], id)
		if err != nil {
			continue
		}
		w.mu.Lock()
		w.answers = append(w.answers, VIPAnswer{At: at, Server: server})
		w.mu.Unlock()
	}
}

// callIDOf is the Call-ID header's value of a SIP message, or "".
func callIDOf(msg []byte) string {
	for _, line := range strings.Split(string(msg), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.EqualFold(k, "Call-ID") || k == "i") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Stop ends the watch and closes its socket.
func (w *VIPWatch) Stop() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.conn.Close()
	w.done.Wait()
}

// Answers are the answers so far, in order.
func (w *VIPWatch) Answers() []VIPAnswer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]VIPAnswer(nil), w.answers...)
}

// Gap is the longest time between two answers from from on (or the start
// of the answers) to to, and when it began.
func Gap(answers []VIPAnswer, from, to time.Time) (gap time.Duration, at time.Time) {
	last := from
	for _, a := range answers {
		if a.At.Before(from) || a.At.After(to) {
			continue
		}
		if d := a.At.Sub(last); d > gap {
			gap, at = d, last
		}
		last = a.At
	}
	if d := to.Sub(last); d > gap {
		gap, at = d, last
	}
	return gap, at
}

// waitConsoleFrom waits for s on m's console after its first skip bytes
// and returns where it ends.
func (m *Machine) waitConsoleFrom(ctx context.Context, skip int, s string) (int, error) {
	for {
		ch := m.console.changed()
		out := m.console.String()
		if skip < len(out) {
			if i := strings.Index(out[skip:], s); i >= 0 {
				return skip + i + len(s), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q on the console: %w", s, ctx.Err())
		case <-m.done:
			return 0, fmt.Errorf("QEMU ended (%v) before the console showed %q", m.err, s)
		case <-ch:
		}
	}
}
