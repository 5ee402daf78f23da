package dispatch

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestMarkAndRefuse: Mark sees every request a phone sends to the backend
// with the phone's address, and the mark reaches the backend; while
// Refuse gives a wait, a phone's request is answered 503 with that
// Retry-After and nothing is passed on, but a backend's request to the
// phone still goes through.
func TestMarkAndRefuse(t *testing.T) {
	be := newFakeBackend(t)
	var refuse atomic.Int64
	var marked atomic.Int32
	var markedFrom atomic.Value
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: time.Hour,
		Mark: func(req *sip.Request, from netip.AddrPort, transport string) {
			marked.Add(1)
			markedFrom.Store(transport + ":" + from.String())
			req.AppendHeader(sip.NewHeader("X-Mark", transport+":"+from.String()))
		},
		Refuse: func() time.Duration { return time.Duration(refuse.Load()) },
	}, be)
	p := newPhone(t)
	want := "udp:" + p.addr.String()

	tests := []struct {
		name    string
		refuse  time.Duration
		call    string
		status  int
		retry   string
		reaches bool
	}{
		{"forwarded and marked", 0, "m1", 200, "", true},
		{"refused while no twin is active", 3 * time.Second, "m2", 503, "3", false},
		{"a short wait is still one second", 10 * time.Millisecond, "m3", 503, "1", false},
		{"forwarded again", 0, "m4", 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refuse.Store(int64(tt.refuse))
			before := marked.Load()
			p.send(d, p.request(d, &call{id: tt.call}, sip.REGISTER, "b"+tt.call))
			res := p.final(tt.call, sip.REGISTER)
			if res.StatusCode != tt.status {
				t.Fatalf("REGISTER answered %s, want %d", res.StartLine(), tt.status)
			}
			if h := res.GetHeader("Retry-After"); tt.retry != "" && (h == nil || h.Value() != tt.retry) {
				t.Errorf("Retry-After = %v, want %s", h, tt.retry)
			}
			got := be.last(sip.REGISTER, tt.call)
			if (got != nil) != tt.reaches {
				t.Fatalf("reached the backend: %v, want %v", got != nil, tt.reaches)
			}
			if !tt.reaches {
				if marked.Load() != before {
					t.Error("a refused request was marked")
				}
				return
			}
			if h := got.GetHeader("X-Mark"); h == nil || h.Value() != want {
				t.Errorf("mark at the backend = %v, want %s", h, want)
			}
			if v, _ := markedFrom.Load().(string); v != want {
				t.Errorf("Mark saw %q, want %q", v, want)
			}
		})
	}

	// A backend's request to the phone passes while phones are refused,
	// and is not marked.
	refuse.Store(int64(time.Second))
	before := marked.Load()
	bye := "OPTIONS sip:m@" + p.addr.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + be.addr.String() + ";branch=z9hG4bKbe1" +
		"\r\nFrom: <sip:pbx@x>;tag=9\r\nTo: <sip:m@x>\r\nCall-ID: from-be\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if err := be.sendTo(d, bye); err != nil {
		t.Fatal(err)
	}
	req := p.nextRequest()
	if req.CallID().Value() != "from-be" {
		t.Fatalf("the phone got %s, want the backend's OPTIONS", req.StartLine())
	}
	if marked.Load() != before || req.GetHeader("X-Mark") != nil {
		t.Error("a backend's request was marked")
	}
}

// TestKeepUp: with keepUp neither failed probes nor a request left
// unanswered mark a backend down; without it both do.
func TestKeepUp(t *testing.T) {
	for _, keep := range []bool{false, true} {
		for _, fail := range []string{"probes", "timeout"} {
			h := newHealth(slog.New(slog.DiscardHandler), 1, func(int) string { return "be" }, 2, 1)
			h.keepUp = keep
			switch fail {
			case "probes":
				h.probed(0, false)
				h.probed(0, false)
			case "timeout":
				h.timedOut(0, "REGISTER")
			}
			if got := h.isUp(0); got != keep {
				t.Errorf("keepUp %v, failed %s: up = %v, want %v", keep, fail, got, keep)
			}
		}
	}
}
