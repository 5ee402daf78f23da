package boot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// procNetDir makes a folder of socket tables: the named testdata files
// as udp, udp6, tcp and tcp6 ("" leaves a table out).
func procNetDir(t *testing.T, udp, udp6, tcp, tcp6 string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"udp": udp, "udp6": udp6, "tcp": tcp, "tcp6": tcp6} {
		if src == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", "procnet", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestListeningIn(t *testing.T) {
	tests := []struct {
		name                 string
		udp, udp6, tcp, tcp6 string
		want                 bool
	}{
		{"nothing yet", "udp-none", "udp-none", "tcp-established", "", false},
		{"SIP over UDP on IPv6", "udp-none", "udp6-sip", "", "", true},
		{"a TCP listener", "udp-connected", "", "", "tcp6-listen", true},
		{"no tables", "", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := procNetDir(t, tt.udp, tt.udp6, tt.tcp, tt.tcp6)
			if got := listeningIn(dir); got != tt.want {
				t.Errorf("listeningIn = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWaitListening(t *testing.T) {
	t.Run("seen once a table shows one", func(t *testing.T) {
		dir := procNetDir(t, "udp-none", "", "", "")
		done := make(chan bool, 1)
		go func() { done <- waitListening(context.Background(), dir, time.Minute, time.Millisecond) }()
		b, err := os.ReadFile(filepath.Join("testdata", "procnet", "udp6-sip"))
		if err != nil {
			t.Fatal(err)
		}
		// Written aside and renamed: the waiter never reads half a table.
		if err := os.WriteFile(filepath.Join(dir, "udp6.tmp"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "udp6.tmp"), filepath.Join(dir, "udp6")); err != nil {
			t.Fatal(err)
		}
		if !<-done {
			t.Error("waitListening gave up although udp6 shows a bound socket")
		}
	})
	t.Run("gives up at its deadline", func(t *testing.T) {
		dir := procNetDir(t, "udp-none", "", "tcp-established", "")
		if waitListening(context.Background(), dir, 30*time.Millisecond, time.Millisecond) {
			t.Error("waitListening saw a listener in tables without one")
		}
	})
	t.Run("ends with its context", func(t *testing.T) {
		dir := procNetDir(t, "udp-none", "", "", "")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if waitListening(ctx, dir, time.Hour, time.Hour) {
			t.Error("waitListening saw a listener in tables without one")
		}
	})
}
