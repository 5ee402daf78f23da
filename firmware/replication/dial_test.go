package replication

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestDialFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A port nothing listens on: bind one and close it.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	tests := []struct {
		name    string
		addrs   []string
		wantOK  bool
		wantErr string
	}{
		{name: "first answers", addrs: []string{ln.Addr().String(), deadAddr}, wantOK: true},
		{name: "second answers", addrs: []string{deadAddr, ln.Addr().String()}, wantOK: true},
		{name: "none answers", addrs: []string{deadAddr, deadAddr}, wantErr: deadAddr},
		{name: "no address", wantErr: "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DialFirst(time.Second, tt.addrs...)(context.Background())
			if tt.wantOK {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dialled")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not name %q", err, tt.wantErr)
			}
		})
	}
}
