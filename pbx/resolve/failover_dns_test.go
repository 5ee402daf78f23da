package resolve

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// responder is a SIP UAS on 127.0.0.1 that answers OPTIONS with 200, or
// stays silent while silent is set, like a box that died.
type responder struct {
	port     int
	silent   atomic.Bool
	answered atomic.Int64
	received atomic.Int64
}

func startResponder(t *testing.T) *responder {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{port: pc.LocalAddr().(*net.UDPAddr).Port}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		r.received.Add(1)
		if r.silent.Load() {
			return
		}
		if err := tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)); err == nil {
			r.answered.Add(1)
		}
	})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeUDP(pc) }()
	t.Cleanup(func() { pc.Close(); <-done; ua.Close() })
	return r
}

// optionsSender sends OPTIONS to a target through a sipgo client with a
// short transaction deadline.
func optionsSender(t *testing.T) func(ctx context.Context, uri sip.Uri, tg Target) (*sip.Response, error) {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	c, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); ua.Close() })
	return func(ctx context.Context, uri sip.Uri, tg Target) (*sip.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		req := sip.NewRequest(sip.OPTIONS, uri)
		req.SetTransport(tg.Transport)
		req.SetDestination(tg.Addr())
		return c.Do(ctx, req)
	}
}

func TestFailoverAndProbeWithSIPResponders(t *testing.T) {
	first, second := startResponder(t), startResponder(t)
	d := startDNSMasq(t, 60,
		fmt.Sprintf("--srv-host=_sip._udp.pair.test,one.pair.test,%d,10,0", first.port),
		fmt.Sprintf("--srv-host=_sip._udp.pair.test,two.pair.test,%d,20,0", second.port),
		"--host-record=one.pair.test,127.0.0.1",
		"--host-record=two.pair.test,127.0.0.1",
	)
	r := newTestResolver(t, d, Config{DeadFor: time.Hour, ProbeInterval: 50 * time.Millisecond, Transports: []string{UDP}})
	send := optionsSender(t)
	uri, err := ParseTarget("sip:pair.test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempt := func(tg Target) (bool, error) {
		res, err := send(ctx, uri, tg)
		if err != nil {
			return Retryable(nil, err), err
		}
		if res.StatusCode >= 300 {
			return Retryable(res, nil), fmt.Errorf("answered %d %s", res.StatusCode, res.Reason)
		}
		return false, nil
	}
	do := func(want *responder, step string) Target {
		t.Helper()
		tg, err := r.Do(ctx, uri, attempt)
		if err != nil {
			t.Fatalf("%s: Do: %v", step, err)
		}
		if int(tg.Port) != want.port {
			t.Fatalf("%s: Do used %s, want port %d", step, tg, want.port)
		}
		return tg
	}

	one := do(first, "both up")
	if second.received.Load() != 0 {
		t.Fatal("both up: the priority-20 target was asked")
	}

	first.silent.Store(true)
	do(second, "first silent")
	if !r.IsDead(one) {
		t.Fatal("first silent: the first target is not marked dead")
	}
	before := first.received.Load()
	do(second, "first dead")
	if got := first.received.Load(); got != before {
		t.Fatalf("first dead: the dead target was tried again (%d requests, had %d)", got, before)
	}
	if ts, _ := r.Resolve(ctx, uri); len(ts) != 2 || !ts[1].Dead || int(ts[0].Port) != second.port {
		t.Fatalf("first dead: Resolve = %v, want the second target then the dead first", ts)
	}

	// The prober revives the first once it answers again.
	probe := func(ctx context.Context, tg Target) error {
		res, err := send(ctx, uri, tg)
		if err != nil {
			return err
		}
		if res.StatusCode != sip.StatusOK {
			return fmt.Errorf("answered %d", res.StatusCode)
		}
		return nil
	}
	go NewProber(r, probe).Run(ctx)
	first.silent.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for r.IsDead(one) {
		if time.Now().After(deadline) {
			t.Fatal("the prober did not mark the first target alive within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	do(first, "first back")
}

func TestDoStopsAtAFinalAnswer(t *testing.T) {
	first, second := startResponder(t), startResponder(t)
	d := startDNSMasq(t, 60,
		fmt.Sprintf("--srv-host=_sip._udp.pair.test,one.pair.test,%d,10,0", first.port),
		fmt.Sprintf("--srv-host=_sip._udp.pair.test,two.pair.test,%d,20,0", second.port),
		"--host-record=one.pair.test,127.0.0.1",
		"--host-record=two.pair.test,127.0.0.1",
	)
	r := newTestResolver(t, d, Config{Transports: []string{UDP}})
	uri, _ := ParseTarget("sip:pair.test")
	var tried []Target
	_, err := r.Do(context.Background(), uri, func(tg Target) (bool, error) {
		tried = append(tried, tg)
		return false, fmt.Errorf("answered 404 Not Found")
	})
	if err == nil || len(tried) != 1 {
		t.Fatalf("Do after a final 404: err %v, tried %v; want the error after one target", err, tried)
	}
	if r.IsDead(tried[0]) {
		t.Error("a target that answered for good was marked dead")
	}
}
