package pbx

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestCallStoreUsesTheDialogBucket(t *testing.T) {
	if cs := callStore(pbxtest.NewStore()); cs != nil {
		t.Errorf("a store without dialogs got a call store: %T", cs)
	}
	st := openStore(t)
	cs := callStore(st)
	if cs == nil {
		t.Fatal("the store's dialog bucket is not used")
	}
	if err := cs.SaveCall("c1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	got, err := cs.LoadCalls()
	if err != nil || len(got) != 1 || string(got["c1"]) != `{"a":1}` {
		t.Fatalf("LoadCalls = %q, %v", got, err)
	}
	if d, _ := st.Dialogs(); string(d["c1"]) != `{"a":1}` {
		t.Errorf("dialog bucket holds %q", d)
	}
	if err := cs.DeleteCall("c1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.LoadCalls(); len(got) != 0 {
		t.Errorf("after delete: %q", got)
	}
}

// savedCall is an answered call between two phones on 127.0.0.1 whose
// media sits on relay ports port and port+2.
func savedCall(id string, port int) b2bua.SavedCall {
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	leg := func(cid, num string, uas bool) *b2bua.LegState {
		return &b2bua.LegState{Number: num, Dialog: b2bua.Dialog{
			CallID: cid, LocalTag: "l" + num, RemoteTag: "r" + num,
			LocalURI: "sip:pbx@127.0.0.1", RemoteURI: "sip:" + num + "@127.0.0.1",
			LocalSeq: 1, RemoteSeq: 1, RemoteTarget: "sip:" + num + "@127.0.0.1:5999",
			Transport: "UDP", Peer: "127.0.0.1:5999", UAS: uas,
		}}
	}
	return b2bua.SavedCall{
		Version: b2bua.SavedCallVersion,
		Call: b2bua.CallState{
			ID: id, Attempt: 1, Attempts: 1, Caller: "100", Callee: "101", State: b2bua.StateAnswered,
			Start: start, Answer: start.Add(time.Second),
			Legs: [2]*b2bua.LegState{leg(id, "100", true), leg(id+"-b", "101", false)},
		},
		Media: media.SessionState{ID: id, Legs: [2]media.LegState{
			{Port: port, KnownSDP: true, SDPRTP: netip.MustParseAddrPort("127.0.0.1:7000")},
			{Port: port + 2, KnownSDP: true, SDPRTP: netip.MustParseAddrPort("127.0.0.1:7002")},
		}},
	}
}

// TestRestoreCallsOnTakeover restores a saved call into a PBX built on the
// store, as the twin does when it takes over, then abandons it as a box
// that hands over does.
func TestRestoreCallsOnTakeover(t *testing.T) {
	const ports = 31040
	st := openStore(t)
	data, err := savedCall("c1", ports).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutDialog("c1", data); err != nil {
		t.Fatal(err)
	}
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	cfg := &config.Config{
		Node: config.Node{Name: "t"},
		SIP:  config.SIP{Listen: []string{"udp:" + addr}, RTPPorts: "31040-31059"},
		Extensions: []config.Extension{
			{Number: "100", Secret: "secret-100-x"}, {Number: "101", Secret: "secret-101-x"},
		},
	}
	p, err := New(Options{Config: cfg, Store: st, AuthKey: make([]byte, 32), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.relay.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := p.RestoreCalls(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RestoreCalls = %d, %v; want 1", n, err)
	}
	s := p.Status()
	if len(s.Calls) != 1 || s.Calls[0].ID != "c1" || s.MediaSessions != 1 {
		t.Fatalf("status after restore: %+v", s)
	}
	// The relay holds the saved ports again.
	if c, err := net.ListenPacket("udp", "127.0.0.1:31040"); err == nil {
		c.Close()
		t.Error("the restored call's relay port is free")
	}
	if n := p.AbandonCalls(); n != 1 {
		t.Errorf("AbandonCalls = %d, want 1", n)
	}
	if d, err := st.Dialogs(); err != nil || len(d) != 1 {
		t.Errorf("saved calls after abandoning: %d, %v; want the record kept", len(d), err)
	}
	if s := p.Status(); len(s.Calls) != 0 || s.MediaSessions != 0 {
		t.Errorf("status after abandoning: %+v", s)
	}
}
