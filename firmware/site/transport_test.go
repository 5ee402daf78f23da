package site

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// recorder keeps the level and message of every record logged.
type recorder struct {
	mu   sync.Mutex
	recs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Level.String()+" "+rec.Message)
	return nil
}

func TestLogWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"hclog", []string{"2026-11-24T22:00:00.000Z [WARN]  raft: heartbeat timeout reached\n"}, []string{"WARN raft: heartbeat timeout reached"}},
		{"memberlist", []string{"2026/11/24 22:00:00 [ERR] memberlist: failed to receive\n"}, []string{"ERROR memberlist: failed to receive"}},
		{"first tag wins", []string{"[ERROR] raft: peer said \"[DEBUG] x\"\n"}, []string{"ERROR raft: peer said \"[DEBUG] x\""}},
		{"untagged", []string{"plain line\n"}, []string{"INFO plain line"}},
		{"split and joined", []string{"[INFO] a", "b\n[WARN] c\n", "\n"}, []string{"INFO ab", "WARN c"}},
		{"no newline yet", []string{"[WARN] pending"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			w := &logWriter{log: slog.New(rec)}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if len(rec.recs) != len(tc.want) {
				t.Fatalf("logged %q, want %q", rec.recs, tc.want)
			}
			for i := range tc.want {
				if rec.recs[i] != tc.want[i] {
					t.Fatalf("logged %q, want %q", rec.recs, tc.want)
				}
			}
		})
	}
}
