package replication

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// quiet is the logger of the tests: warnings and errors only.
func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, what, cond)
}

// pki is a throwaway certificate authority for one test.
type pki struct {
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{ca: ca, key: key, pool: pool}
}

// cert issues a certificate for node, usable by client and server.
func (p *pki) cert(t testing.TB, node string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: node},
		DNSNames:     []string{node},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serverTLS is the active's side: its certificate from p, and clients
// must show one from clients.
func serverTLS(t testing.TB, p, clients *pki, node string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert(t, node)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// clientTLS is the standby's side: its certificate from p; the active must
// show one from servers naming peer.
func clientTLS(t testing.TB, p, servers *pki, node, peer string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert(t, node)},
		RootCAs:      servers.pool,
		ServerName:   peer,
		MinVersion:   tls.VersionTLS13,
	}
}

func openStore(t testing.TB, dir string, opts store.Options) *store.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// events records a side's events.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) count(k EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// gate stalls and cuts the standby's connections on the test's command.
type gate struct {
	mu    sync.Mutex
	open  chan struct{} // closed while reads may go on
	conns []net.Conn
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) stall() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) resume() {
	g.mu.Lock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
	g.mu.Unlock()
}

// cut closes every connection made so far.
func (g *gate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

func (g *gate) wrap(c net.Conn) net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns = append(g.conns, c)
	return &gatedConn{Conn: c, g: g}
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Read(p []byte) (int, error) {
	c.g.mu.Lock()
	open := c.g.open
	c.g.mu.Unlock()
	<-open
	return c.Conn.Read(p)
}

// pair is an active and a standby store linked over loopback TCP.
type pair struct {
	active, standby *store.Store
	snd             *Sender
	rcv             *Receiver
	sndEv, rcvEv    *events
	gate            *gate
	addr            string
	cancelRcv       context.CancelFunc
	rcvDone         chan struct{}
}

type pairOpts struct {
	logKeep       int
	ackTimeout    time.Duration
	serverTLS     *tls.Config
	clientTLS     *tls.Config
	activeDir     string // "" : a new temp dir
	standbyDir    string
	noReceiver    bool
	discard       bool
	prepareActive func(*store.Store)
}

func newPair(t testing.TB, o pairOpts) *pair {
	t.Helper()
	if o.activeDir == "" {
		o.activeDir = t.TempDir()
	}
	if o.standbyDir == "" {
		o.standbyDir = t.TempDir()
	}
	p := &pair{sndEv: &events{}, rcvEv: &events{}, gate: newGate()}
	p.snd = NewSender(SenderConfig{
		Node: "a", Peer: "b", TLS: o.serverTLS, AckTimeout: o.ackTimeout, DiscardDiverged: o.discard,
		HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: 2 * time.Second,
		OnEvent: p.sndEv.add, Logger: quiet(),
	})
	p.active = openStore(t, o.activeDir, store.Options{LogKeep: o.logKeep, BeforeCommit: p.snd.BeforeCommit})
	if o.prepareActive != nil {
		o.prepareActive(p.active)
	}
	p.standby = openStore(t, o.standbyDir, store.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	snd, active := p.snd, p.active
	go func() {
		defer close(served)
		if err := snd.Serve(ctx, active, ln); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); p.gate.resume(); <-served })
	if !o.noReceiver {
		p.startReceiver(t, o.clientTLS)
	}
	return p
}

func (p *pair) startReceiver(t testing.TB, cfg *tls.Config) {
	t.Helper()
	rcv, err := NewReceiver(ReceiverConfig{
		Node: "b", Peer: "a", Store: p.standby, TLS: cfg,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", p.addr)
			if err != nil {
				return nil, err
			}
			return p.gate.wrap(c), nil
		},
		IdleTimeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnEvent: p.rcvEv.add, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.rcv = rcv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rcv.Run(ctx) }()
	p.cancelRcv, p.rcvDone = cancel, done
	t.Cleanup(p.stopReceiver)
}

func (p *pair) stopReceiver() {
	if p.cancelRcv == nil {
		return
	}
	p.gate.resume()
	p.cancelRcv()
	<-p.rcvDone
	p.cancelRcv = nil
}

// waitSynced waits until the sender reports the standby in sync and the
// standby's store equals the active's.
func (p *pair) waitSynced(t testing.TB) {
	t.Helper()
	waitFor(t, "the standby in sync", func() bool {
		return p.snd.InSync() && p.rcv.InSync() && p.standby.Seq() == p.active.Seq()
	})
	sameContent(t, p.active, p.standby)
}

var allBuckets = []string{store.BucketConfig, store.BucketBindings, store.BucketCDRs, store.BucketDialogs}

// dump returns every key and value of the typed buckets and the sequence.
func dump(t testing.TB, st *store.Store) map[string]string {
	t.Helper()
	out := map[string]string{"_seq": fmt.Sprint(st.Seq())}
	err := st.View(func(tx *store.Tx) error {
		for _, b := range allBuckets {
			if err := tx.ForEach(b, "", "", func(k string, v []byte) error {
				out[b+"/"+k] = string(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameContent(t testing.TB, a, b *store.Store) {
	t.Helper()
	da, db := dump(t, a), dump(t, b)
	if !reflect.DeepEqual(da, db) {
		t.Fatalf("stores differ:\nactive  %d keys, seq %s\nstandby %d keys, seq %s", len(da), da["_seq"], len(db), db["_seq"])
	}
	if err := b.Check(); err != nil {
		t.Fatalf("standby store: %v", err)
	}
}

var epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// binding is a REGISTER-sized binding.
func binding(i int) location.Binding {
	return location.Binding{
		AOR:       fmt.Sprintf("%d", 100+i%50),
		Contact:   fmt.Sprintf("sip:%d@192.168.1.%d:5062;transport=udp;rinstance=%08x", 100+i%50, 20+i%200, i),
		Source:    fmt.Sprintf("udp:192.168.1.%d:5062", 20+i%200),
		CallID:    fmt.Sprintf("reg-%d@phone", i),
		CSeq:      uint32(i + 1),
		Expires:   epoch.Add(time.Hour),
		UserAgent: "Yealink SIP-T46U 108.86.0.20",
		Updated:   epoch.Add(time.Duration(i) * time.Second),
	}
}

func record(i int) cdr.Record {
	start := epoch.Add(time.Duration(i) * time.Minute)
	return cdr.Record{
		ID: fmt.Sprintf("call-%d-1", i), CallID: fmt.Sprintf("call-%d", i),
		Caller: "100", Callee: "101", Start: start, Answer: start.Add(3 * time.Second),
		End: start.Add(time.Minute), Disp: cdr.Answered, SIPCode: 200, HangupBy: "caller",
	}
}

// writeMix makes n writes of every kind, deletes included, from offset.
func writeMix(t testing.TB, st *store.Store, offset, n int) {
	t.Helper()
	for i := offset; i < offset+n; i++ {
		var err error
		switch i % 5 {
		case 0, 1:
			err = st.SaveBinding(binding(i))
		case 2:
			err = st.AppendCDR(record(i))
		case 3:
			err = st.PutDialog(fmt.Sprintf("dlg-%d", i), []byte(fmt.Sprintf("state of %d", i)))
		case 4:
			b := binding(i - 4)
			err = st.DeleteBinding(b.AOR, b.Contact)
		}
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}
