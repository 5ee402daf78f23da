package dispatch

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkCall passes the messages of one call through the proxy, as
// the dispatcher benchmark's callers and backends send them: INVITE, 100,
// 200, ACK, BYE, 200 (the sending itself recorded, not done).
func BenchmarkCall(b *testing.B) {
	d, err := New(Config{
		Algorithm: HashCallID,
		Backends: []Backend{
			{Addr: netip.MustParseAddrPort("10.0.0.1:5060")},
			{Addr: netip.MustParseAddrPort("10.0.0.2:5060")},
			{Addr: netip.MustParseAddrPort("10.0.0.3:5060")},
		},
		Listen: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.100:5060")},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	c := &recConn{local: netip.MustParseAddrPort("10.0.0.100:5060")}
	s := &sock{conn: c, local: c.local.Addr(), host: "10.0.0.100", port: 5060, via: "SIP/2.0/UDP 10.0.0.100:5060"}
	parser := sip.NewParser()
	phone := netip.MustParseAddrPort("10.0.0.50:5062")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("bench-%d@10.0.0.50", i)
		c.out, c.to = c.out[:0], c.to[:0]
		inv := fmt.Sprintf("INVITE sip:200@10.0.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-%d-1\r\n"+
			"From: <sip:caller@10.0.0.50:5062>;tag=c%d\r\nTo: <sip:200@10.0.0.100:5060>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:caller@10.0.0.50:5062>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n", i, i, id)
		d.handle(s, parser, []byte(inv), phone)
		// The backend's answers: the forwarded INVITE's Vias and Record-Route, copied.
		req, be := c.passedOn()
		if req == nil {
			b.Fatal("the INVITE was not passed on")
		}
		for _, code := range []int{100, 200} {
			res := sip.NewResponseFromRequest(req, code, "x", nil)
			if code == 200 {
				res.To().Params.Add("tag", "be")
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: be.Addr().String(), Port: int(be.Port())}})
			}
			d.handle(s, parser, []byte(res.String()), be)
		}
		route := req.RecordRoute().Value()
		for j, method := range []string{"ACK", "BYE"} {
			msg := fmt.Sprintf("%s sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-%d-%d\r\nRoute: %s\r\n"+
				"From: <sip:caller@10.0.0.50:5062>;tag=c%d\r\nTo: <sip:200@10.0.0.100:5060>;tag=be\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"+
				"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", method, be, i, j+2, route, i, id, j+1, method)
			d.handle(s, parser, []byte(msg), phone)
		}
		bye, err := sip.ParseMessage(c.out[len(c.out)-1])
		if err != nil {
			b.Fatal(err)
		}
		d.handle(s, parser, []byte(sip.NewResponseFromRequest(bye.(*sip.Request), 200, "OK", nil).String()), be)
	}
}

// BenchmarkStreamConnections opens b.N idle TCP connections to the
// dispatcher and reports what each costs it in memory (heap and
// goroutine stacks, after a GC): the figure behind tcp_max_connections.
func BenchmarkStreamConnections(b *testing.B) {
	n := min(b.N, 3000)
	cfg := Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, MaxConns: n + 1, MaxConnsPerSource: n + 1,
		Backends:     []Backend{{Addr: netip.MustParseAddrPort("127.0.0.1:9")}},
		Listen:       []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		StreamListen: []StreamListener{{Addr: netip.MustParseAddrPort("127.0.0.1:0")}},
		Logger:       slog.New(slog.DiscardHandler)}
	d, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- d.Run(b.Context(), func(a []string) { ready <- a }) }()
	addrs := <-ready
	at := strings.TrimPrefix(addrs[1], "tcp:")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", at)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.streams.count() < n && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := d.streams.count(); got != n {
		b.Fatalf("%d connections in the table, want %d", got, n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
	b.ReportMetric(float64(used)/float64(n), "B/conn")
}
