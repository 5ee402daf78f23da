package replication

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

const (
	envStandbyDir = "TP_REPL_STANDBY_DIR"
	envActiveAddr = "TP_REPL_ACTIVE_ADDR"
)

// TestHelperStandbyProcess is the standby process that TestCrashMidSnapshot
// kills; on its own it does nothing.
func TestHelperStandbyProcess(t *testing.T) {
	dir, addr := os.Getenv(envStandbyDir), os.Getenv(envActiveAddr)
	if dir == "" || addr == "" {
		t.Skip("the standby process of TestCrashMidSnapshot, run by it")
	}
	st, err := store.Open(dir, store.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := NewReceiver(ReceiverConfig{
		Node: "b", Store: st, Logger: quiet(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = rcv.Run(context.Background()) // until killed
}

// holdListener hands out connections whose writes stop after limit bytes
// until released, so a test can catch a snapshot half way.
type holdListener struct {
	net.Listener
	limit   atomic.Int64 // 0: no limit
	holding atomic.Bool
	mu      sync.Mutex
	release chan struct{}
}

func (l *holdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &holdConn{Conn: c, l: l}, nil
}

func (l *holdListener) let() {
	l.limit.Store(0)
	l.mu.Lock()
	close(l.release)
	l.release = make(chan struct{})
	l.mu.Unlock()
}

type holdConn struct {
	net.Conn
	l       *holdListener
	written int64
}

func (c *holdConn) Write(p []byte) (int, error) {
	if lim := c.l.limit.Load(); lim > 0 && c.written+int64(len(p)) > lim {
		c.l.mu.Lock()
		rel := c.l.release
		c.l.mu.Unlock()
		c.l.holding.Store(true)
		<-rel
	}
	c.written += int64(len(p))
	return c.Conn.Write(p)
}

// TestCrashMidSnapshot kills the standby process with SIGKILL while it
// receives a snapshot, then checks that its store opens as it was before,
// passes bbolt's check, and catches up when the standby comes back.
func TestCrashMidSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a standby process")
	}
	activeDir, standbyDir := t.TempDir(), t.TempDir()
	snd := NewSender(SenderConfig{Node: "a", HeartbeatInterval: 50 * time.Millisecond, Logger: quiet()})
	active := openStore(t, activeDir, store.Options{LogKeep: 10, BeforeCommit: snd.BeforeCommit})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &holdListener{Listener: tcp, release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = snd.Serve(ctx, active, ln) }()
	t.Cleanup(func() { cancel(); ln.let(); <-served })

	// The standby in sync with a small store, then away.
	writeMix(t, active, 0, 20)
	standby, err := store.Open(standbyDir, store.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	syncOnce(t, standby, tcp.Addr().String(), active)
	before := dump(t, standby)
	if err := standby.Close(); err != nil {
		t.Fatal(err)
	}

	// The active moves on far past its log: the standby needs a snapshot.
	blob := make([]byte, 8<<10)
	for i := range 300 {
		rand.Read(blob)
		if err := active.PutDialog(fmt.Sprintf("big-%d", i), blob); err != nil {
			t.Fatal(err)
		}
	}
	var snap countWriter
	if err := active.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	const limit = 256 << 10
	if snap.n < 4*limit {
		t.Fatalf("snapshot of %d bytes is too small to be cut half way", snap.n)
	}
	ln.limit.Store(limit)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStandbyProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envStandbyDir+"="+standbyDir, envActiveAddr+"="+tcp.Addr().String())
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the standby process: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	restoring := filepath.Join(standbyDir, store.FileName+".restore")
	waitFor(t, "the standby to be half way through the snapshot", func() bool {
		fi, err := os.Stat(restoring)
		return ln.holding.Load() && err == nil && fi.Size() > 0
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if fi, err := os.Stat(restoring); err == nil && fi.Size() >= snap.n {
		t.Fatalf("the standby had the whole snapshot (%d bytes) before the kill", fi.Size())
	}
	ln.let()

	standby = openStore(t, standbyDir, store.Options{})
	if err := standby.Check(); err != nil {
		t.Fatalf("standby store after the kill: %v", err)
	}
	if after := dump(t, standby); !reflect.DeepEqual(before, after) {
		t.Fatalf("the standby's store changed though the snapshot never completed (seq %s → %s)", before["_seq"], after["_seq"])
	}

	// Back again, it completes the snapshot.
	p := &pair{active: active, standby: standby, snd: snd, sndEv: &events{}, rcvEv: &events{}, gate: newGate(), addr: tcp.Addr().String()}
	p.startReceiver(t, nil)
	p.waitSynced(t)
}

// syncOnce runs a receiver on st until it holds everything active has.
func syncOnce(t *testing.T, st *store.Store, addr string, active *store.Store) {
	t.Helper()
	p := &pair{active: active, standby: st, sndEv: &events{}, rcvEv: &events{}, gate: newGate(), addr: addr}
	p.startReceiver(t, nil)
	waitFor(t, "the first sync", func() bool { return p.rcv.InSync() && st.Seq() == active.Seq() })
	p.stopReceiver()
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
