package voicemail

import (
	"context"
	"log/slog"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
)

func pinService(t *testing.T) *Service {
	t.Helper()
	s := &Service{o: Options{
		Directory: fakeDirectory{
			"201": {Number: "201", VoicemailPIN: "4711"},
			"202": {Number: "202"},
			"203": {Number: "203", VoicemailPIN: "1234", Voicemail: &no},
		},
		Config: func() *config.Voicemail { return &config.Voicemail{} },
	}, log: slog.New(slog.DiscardHandler)}
	s.boxes = NewMailboxes(NewMemStore(), func() int { return 10 }, nil)
	return s
}

func TestCheckPIN(t *testing.T) {
	s := pinService(t)
	tests := []struct {
		box, pin string
		ok       bool
	}{
		{"201", "4711", true},
		{"201", "4712", false},
		{"201", "47111", false},
		{"201", "", false},
		{"202", "", false},     // no PIN: no login
		{"203", "1234", false}, // no mailbox
		{"299", "4711", false},
		{"", "", false},
	}
	for _, tc := range tests {
		if got := s.checkPIN(tc.box, tc.pin); got != tc.ok {
			t.Errorf("mailbox %q PIN %q: %v, want %v", tc.box, tc.pin, got, tc.ok)
		}
	}
}

// TestLogin types a wrong PIN, then the right one, ahead of the prompts
// (keys wait in their queue), and gets the mailbox.
func TestLogin(t *testing.T) {
	ep, _ := loopback(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ss := &session{s: pinService(t), ep: ep, ctx: ctx, cancel: cancel, log: slog.New(slog.DiscardHandler)}
	go func() { // more keys than the queue holds: typed while it plays
		for _, k := range []byte("201#0000#201#4711#") {
			select {
			case ep.keys <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	if box := ss.login(); box != "201" {
		t.Fatalf("login gave mailbox %q, want 201", box)
	}
}
