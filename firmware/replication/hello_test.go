package replication

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// The active answers a hello it cannot serve with an error frame naming
// why, and serves the rest.
func TestHelloChecks(t *testing.T) {
	tests := []struct {
		name     string
		hello    hello
		wantMode string // "" : refused
		wantErr  string
	}{
		{name: "good", hello: hello{Proto: ProtocolVersion, Node: "b"}, wantMode: modeChanges},
		{name: "other protocol", hello: hello{Proto: ProtocolVersion + 1, Node: "b"}, wantErr: "protocol"},
		{name: "not the twin", hello: hello{Proto: ProtocolVersion, Node: "c"}, wantErr: `"c"`},
		{name: "our own name", hello: hello{Proto: ProtocolVersion, Node: "a"}, wantErr: "own node name"},
		{name: "ahead", hello: hello{Proto: ProtocolVersion, Node: "b", Seq: 99, LastSum: "x"}, wantMode: modeMerge},
		{name: "ahead, discarding", hello: hello{Proto: ProtocolVersion, Node: "b", Seq: 99}, wantMode: modeSnapshot},
		{name: "same seq, other change", hello: hello{Proto: ProtocolVersion, Node: "b", Seq: 3, LastSum: "x"}, wantMode: modeMerge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snd := NewSender(SenderConfig{Node: "a", Peer: "b", Logger: quiet(), DiscardDiverged: strings.HasSuffix(tt.name, "discarding")})
			st := openStore(t, t.TempDir(), store.Options{BeforeCommit: snd.BeforeCommit})
			writeMix(t, st, 0, 5)
			active, standby := net.Pipe()
			done := make(chan struct{})
			go func() { defer close(done); _ = snd.ServeConn(context.Background(), st, active) }()
			t.Cleanup(func() { standby.Close(); <-done })
			_ = standby.SetDeadline(time.Now().Add(5 * time.Second))
			if err := writeJSON(standby, msgHello, tt.hello); err != nil {
				t.Fatal(err)
			}
			typ, payload, err := readFrame(standby)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantMode == "" {
				if typ != msgError || !strings.Contains(string(payload), tt.wantErr) {
					t.Fatalf("got frame %d %q, want an error naming %q", typ, payload, tt.wantErr)
				}
				return
			}
			var sf start
			if typ != msgStart || json.Unmarshal(payload, &sf) != nil {
				t.Fatalf("got frame %d %q, want start", typ, payload)
			}
			if sf.Mode != tt.wantMode || sf.Node != "a" || sf.Seq != st.Seq() {
				t.Errorf("start %+v, want mode %s from a at %d", sf, tt.wantMode, st.Seq())
			}
		})
	}
}

func TestLag(t *testing.T) {
	st := openStore(t, t.TempDir(), store.Options{})
	ev := &events{}
	r, err := NewReceiver(ReceiverConfig{Node: "b", Store: st, Logger: quiet(), OnEvent: ev.add,
		Dial: func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }})
	if err != nil {
		t.Fatal(err)
	}
	r.setLink(true, false)
	r.progress(0, 3, "a")
	if r.InSync() {
		t.Error("in sync while 3 changes behind")
	}
	if l := r.Lag(); l.Changes != 3 {
		t.Errorf("lag %+v, want 3 changes", l)
	}
	writeMix(t, st, 0, 3)
	r.progress(st.Seq(), 3, "a")
	if !r.InSync() || r.Lag() != (Lag{}) {
		t.Errorf("caught up: in sync %v, lag %+v", r.InSync(), r.Lag())
	}
	if ev.count(InSync) != 1 {
		t.Errorf("%d in-sync events, want 1", ev.count(InSync))
	}
	r.setLink(false, false)
	if r.InSync() {
		t.Error("in sync while disconnected")
	}
}

func TestNewReceiverNeedsStoreAndDial(t *testing.T) {
	st := openStore(t, t.TempDir(), store.Options{})
	dial := func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }
	for _, cfg := range []ReceiverConfig{{Dial: dial}, {Store: st}} {
		if _, err := NewReceiver(cfg); err == nil {
			t.Errorf("NewReceiver(%+v) accepted", cfg)
		}
	}
}
