package siplog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), Options{Burst: 2, Interval: time.Minute, MaxValue: 10, Now: func() time.Time { return now }})
	log := slog.New(h).With("caller", "Transport<UDP>")

	for range 5 {
		log.Error("failed to parse", "data", strings.Repeat("x", 50))
	}
	log.Info("other message")
	if got := strings.Count(buf.String(), "failed to parse"); got != 2 {
		t.Fatalf("burst of 2 let %d records through:\n%s", got, buf.String())
	}
	if strings.Contains(buf.String(), strings.Repeat("x", 11)) {
		t.Fatalf("long value not truncated:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "other message") {
		t.Fatalf("a different message was limited too:\n%s", buf.String())
	}

	buf.Reset()
	now = now.Add(time.Minute)
	log.Error("failed to parse", "data", "y")
	if !strings.Contains(buf.String(), "suppressed_before=3") {
		t.Fatalf("new interval does not report the 3 suppressed records:\n%s", buf.String())
	}
}
