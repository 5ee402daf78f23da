package replication

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// bundleBed is an active and a standby linked over TLS, each naming its
// firmware version, for the rolling-update additions of the link.
type bundleBed struct {
	snd      *Sender
	rcv      *Receiver
	addr     string
	fetchCfg FetchConfig
	mu       sync.Mutex
	offers   []Offer
}

func newBundleBed(t *testing.T, activeFW, standbyFW string) *bundleBed {
	t.Helper()
	ca := newPKI(t, "pair")
	b := &bundleBed{}
	b.snd = NewSender(SenderConfig{Node: "a", Peer: "b", Firmware: activeFW, TLS: serverTLS(t, ca, ca, "a"),
		HeartbeatInterval: 20 * time.Millisecond, IdleTimeout: 5 * time.Second, Logger: quiet()})
	active := openStore(t, t.TempDir(), store.Options{BeforeCommit: b.snd.BeforeCommit})
	standby := openStore(t, t.TempDir(), store.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = b.snd.Serve(ctx, active, ln) })
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", b.addr)
	}
	ctls := clientTLS(t, ca, ca, "b", "a")
	b.fetchCfg = FetchConfig{Node: "b", Dial: dial, TLS: ctls, Timeout: 5 * time.Second}
	b.rcv, err = NewReceiver(ReceiverConfig{Node: "b", Peer: "a", Store: standby, Dial: dial, TLS: ctls, Firmware: standbyFW,
		IdleTimeout: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quiet(),
		OnOffer: func(o Offer) { b.mu.Lock(); b.offers = append(b.offers, o); b.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = b.rcv.Run(ctx) })
	waitFor(t, "the standby in sync", func() bool { return b.snd.InSync() && b.rcv.InSync() })
	return b
}

func (b *bundleBed) lastOffer() (Offer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.offers) == 0 {
		return Offer{}, false
	}
	return b.offers[len(b.offers)-1], true
}

// Both ends learn the other's firmware version from the hello and the
// start frame.
func TestFirmwareInHello(t *testing.T) {
	b := newBundleBed(t, "2.0", "1.9")
	if got := b.snd.Status().PeerFirmware; got != "1.9" {
		t.Errorf("the active sees the standby on %q, want 1.9", got)
	}
	if got := b.rcv.PeerFirmware(); got != "2.0" {
		t.Errorf("the standby sees the active on %q, want 2.0", got)
	}
	if b.snd.Status().Since.IsZero() {
		t.Error("no link start time")
	}
}

// A hello and a heartbeat from a later version, with fields this one does
// not know, are accepted: versions N and N+1 pair during a roll.
func TestNextVersionFramesAccepted(t *testing.T) {
	snd := NewSender(SenderConfig{Node: "a", Peer: "b", Logger: quiet()})
	st := openStore(t, t.TempDir(), store.Options{BeforeCommit: snd.BeforeCommit})
	active, standby := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); _ = snd.ServeConn(context.Background(), st, active) }()
	t.Cleanup(func() { standby.Close(); <-done })
	_ = standby.SetDeadline(time.Now().Add(10 * time.Second))
	raw := `{"proto":1,"node":"b","seq":0,"config_version":0,"firmware":"9.1","a_later_field":{"x":1}}`
	if err := writeFrame(standby, msgHello, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	typ, payload, err := readFrame(standby)
	if err != nil || typ != msgStart {
		t.Fatalf("got frame %d %q (%v), want start", typ, payload, err)
	}
	var hb heartbeat
	if err := json.Unmarshal([]byte(`{"seq":3,"time":"2026-01-01T00:00:00Z","later":[1,2]}`), &hb); err != nil || hb.Seq != 3 {
		t.Errorf("a later heartbeat decodes as %+v, %v", hb, err)
	}
}

func TestOfferAndFetch(t *testing.T) {
	bundle := bytes.Repeat([]byte("twinpbx bundle "), 20000) // several chunk frames
	offer := Offer{ID: "roll-1", Version: "2.0", Size: int64(len(bundle)), SHA256: "x"}
	tests := []struct {
		name    string
		offer   *Offer // what the active offers; nil: nothing
		data    []byte // what it sends
		fetch   Offer  // what the standby asks for
		consume func(io.Reader) error
		wantErr string // "" : taken
		verdict string // the active's record of the standby's verdict
	}{
		{name: "taken", offer: &offer, data: bundle, fetch: offer},
		{name: "refused by the standby", offer: &offer, data: bundle, fetch: offer,
			consume: func(r io.Reader) error { _, _ = io.Copy(io.Discard, r); return errors.New("bad signature") },
			wantErr: "bad signature", verdict: "bad signature"},
		{name: "another offer", offer: &offer, data: bundle, fetch: Offer{ID: "roll-0", Version: "1.5", Size: 10}, wantErr: "no bundle"},
		{name: "nothing on offer", data: bundle, fetch: offer, wantErr: "no bundle"},
		{name: "shorter than offered", offer: &offer, data: bundle[:1000], fetch: offer, wantErr: "sending the bundle"},
		{name: "longer than offered to the standby", offer: &offer, data: bundle,
			fetch: Offer{ID: offer.ID, Version: offer.Version, Size: offer.Size - 5}, wantErr: "more than the offered size"},
		{name: "size out of range", offer: &offer, data: bundle, fetch: Offer{ID: offer.ID, Size: MaxBundle + 1}, wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBundleBed(t, "1.0", "1.0")
			b.snd.SetOffer(tt.offer, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tt.data)), nil })
			if tt.offer != nil {
				waitFor(t, "the offer in a heartbeat", func() bool { o, ok := b.lastOffer(); return ok && o == *tt.offer })
			}
			var got []byte
			consume := tt.consume
			if consume == nil {
				consume = func(r io.Reader) error {
					var err error
					got, err = io.ReadAll(r)
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := Fetch(ctx, b.fetchCfg, tt.fetch, consume)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if !bytes.Equal(got, tt.data) {
					t.Errorf("got %d bytes, want the %d offered", len(got), len(tt.data))
				}
				waitFor(t, "the active records the verdict", func() bool { f := b.snd.Fetched(); return f.Done && f.ID == offer.ID && f.Err == "" })
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch: %v, want an error naming %q", err, tt.wantErr)
			}
			if tt.verdict != "" {
				waitFor(t, "the active records the refusal", func() bool { return strings.Contains(b.snd.Fetched().Err, tt.verdict) })
			}
		})
	}
}

// A withdrawn offer leaves the heartbeats, and a fetch of it is refused.
func TestOfferWithdrawn(t *testing.T) {
	b := newBundleBed(t, "1.0", "1.0")
	o := Offer{ID: "r", Version: "2", Size: 3}
	b.snd.SetOffer(&o, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil })
	waitFor(t, "the offer", func() bool { _, ok := b.lastOffer(); return ok })
	b.snd.SetOffer(nil, nil)
	err := Fetch(context.Background(), b.fetchCfg, o, func(r io.Reader) error { _, err := io.ReadAll(r); return err })
	if err == nil || !strings.Contains(err.Error(), "no bundle") {
		t.Fatalf("fetch of a withdrawn offer: %v", err)
	}
}

// A fetch without the pair's certificate is refused before any bundle
// byte leaves.
func TestFetchNeedsThePairsCertificate(t *testing.T) {
	b := newBundleBed(t, "1.0", "1.0")
	o := Offer{ID: "r", Version: "2", Size: 3}
	b.snd.SetOffer(&o, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil })
	cfg := b.fetchCfg
	cfg.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} // no client certificate
	var got []byte
	err := Fetch(context.Background(), cfg, o, func(r io.Reader) error { var err error; got, err = io.ReadAll(r); return err })
	if err == nil || len(got) > 0 {
		t.Fatalf("a fetch without the pair's certificate: %v, %d bytes", err, len(got))
	}
}

// FuzzServeFetch: any first frame payload of a fetch connection is
// answered or refused without a panic.
func FuzzServeFetch(f *testing.F) {
	f.Add([]byte(`{"proto":1,"node":"b","id":"r"}`))
	f.Add([]byte(`{"proto":2,"node":"b","id":"r"}`))
	f.Add([]byte(`{"proto":1,"node":"c"}`))
	f.Add([]byte(`{`))
	f.Add([]byte{})
	snd := NewSender(SenderConfig{Node: "a", Peer: "b", Logger: quiet(), HandshakeTimeout: time.Second, IdleTimeout: time.Second})
	snd.SetOffer(&Offer{ID: "r", Version: "2", Size: 3}, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil })
	f.Fuzz(func(t *testing.T, payload []byte) {
		a, s := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- snd.serveFetch(a, payload) }()
		_ = s.SetDeadline(time.Now().Add(2 * time.Second))
		go func() { _, _ = io.Copy(io.Discard, s) }()
		go func() { _ = writeJSON(s, msgFetchDone, fetchDone{}) }()
		<-done
		a.Close()
		s.Close()
	})
}
