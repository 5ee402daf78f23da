package twin

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/relay"
)

func TestBeatRoundTrip(t *testing.T) {
	sent := time.Unix(1000, 0)
	for _, b := range []cluster.Beat{
		{Role: cluster.Active, Term: 7, StoreSeq: 9, ConfigVersion: 2, GatewayOK: true, Healthy: true, WatchdogTimeout: 5 * time.Second},
		{Role: cluster.Standby, Term: 3, Handover: true, Goodbye: true},
		{Role: cluster.Maintenance, Maintenance: true},
		{Role: cluster.Fenced},
	} {
		w := toWire(b)
		v := heartbeat.PeerView{Heard: true, Latest: heartbeat.Received{Node: "b", Beat: w, Incarnation: 5, Sent: sent, Arrived: sent,
			Echo: heartbeat.Echoed{Seq: 1, Term: 6, Sent: sent.Add(-time.Second)}}}
		got := fromWire(v).Last
		want := b
		want.Node, want.Incarnation, want.Sent = "b", 5, sent
		want.Echo = cluster.Echo{Sent: sent.Add(-time.Second), Term: 6}
		if got != want {
			t.Errorf("round trip of %+v:\n got %+v\nwant %+v", b, got, want)
		}
	}
}

func TestFromWirePaths(t *testing.T) {
	at := time.Unix(2000, 0)
	v := heartbeat.PeerView{Paths: []heartbeat.PathView{
		{Name: "lan", Up: true, RTT: time.Millisecond, Last: heartbeat.Received{Arrived: at}},
		{Name: "crossover", Up: false},
	}}
	got := fromWire(v)
	if !got.Paths[cluster.LAN].Up || got.Paths[cluster.LAN].Latency != time.Millisecond || !got.Paths[cluster.LAN].LastHeard.Equal(at) {
		t.Errorf("lan path: %+v", got.Paths[cluster.LAN])
	}
	if got.Paths[cluster.Crossover].Up || !got.Heard.IsZero() {
		t.Errorf("crossover or heard wrong: %+v", got)
	}
}

func TestRelaySide(t *testing.T) {
	for _, c := range []struct {
		node, peer string
		want       relay.Side
	}{{"a", "b", relay.A}, {"b", "a", relay.B}, {"branch-1", "branch-2", relay.A}} {
		if got := Side(c.node, c.peer); got != c.want {
			t.Errorf("Side(%q, %q) = %v, want %v", c.node, c.peer, got, c.want)
		}
	}
}

func TestLocalizeAndSameShared(t *testing.T) {
	shared := &config.Config{Version: 4, Node: config.Node{Name: "a"},
		Extensions: []config.Extension{{Number: "100", Secret: "s"}},
		Cluster:    &config.Cluster{Peer: "b"}}
	local := &config.Config{Node: config.Node{Name: "b"},
		Extensions: []config.Extension{{Number: "100", Secret: "s"}},
		Cluster:    &config.Cluster{Peer: "a"}}
	got := Localize(shared, local)
	if got.Node.Name != "b" || got.Cluster.Peer != "a" || got.Version != 4 || got.SIP.Realm != "a" {
		t.Errorf("Localize = node %q peer %q version %d realm %q", got.Node.Name, got.Cluster.Peer, got.Version, got.SIP.Realm)
	}
	if !SameShared(shared, local) {
		t.Error("SameShared: configs differing only in node and cluster differ")
	}
	other := *local
	other.Extensions = []config.Extension{{Number: "101", Secret: "s"}}
	if SameShared(shared, &other) {
		t.Error("SameShared: other extensions count as the same")
	}
}

func TestNonceKeySharedByTwins(t *testing.T) {
	a, err := NonceKey("same-pairing-key-123")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NonceKey("same-pairing-key-123")
	c, _ := NonceKey("other-pairing-key-12")
	if string(a) != string(b) || string(a) == string(c) || len(a) != 32 {
		t.Errorf("nonce keys: same key %x %x, other %x", a, b, c)
	}
}

func TestAnsweringNode(t *testing.T) {
	target := netip.MustParseAddrPort("10.0.0.10:5060")
	req := string(optionsRequest(netip.MustParseAddrPort("10.0.0.11:4000"), target, "abcdefgh1234", "cid-1"))
	if req == "" {
		t.Fatal("empty request")
	}
	ok := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.11:4000;branch=z9hG4bKabcdefgh1234\r\nFrom: <sip:p@10.0.0.11>;tag=1\r\nTo: <sip:10.0.0.10:5060>;tag=2\r\nCall-ID: cid-1\r\nCSeq: 1 OPTIONS\r\n%sContent-Length: 0\r\n\r\n"
	for _, c := range []struct {
		name, data, callID, node string
		ok                       bool
	}{
		{"named", sprintf(ok, "Server: twinpbx/b\r\n"), "cid-1", "b", true},
		{"other call", sprintf(ok, "Server: twinpbx/b\r\n"), "cid-2", "", false},
		{"no server", sprintf(ok, ""), "cid-1", "", false},
		{"foreign server", sprintf(ok, "Server: asterisk\r\n"), "cid-1", "", false},
		{"empty name", sprintf(ok, "Server: twinpbx/\r\n"), "cid-1", "", false},
		{"a request", req, "cid-1", "", false},
		{"garbage", "\x00\x01", "cid-1", "", false},
	} {
		node, got := answeringNode([]byte(c.data), c.callID)
		if node != c.node || got != c.ok {
			t.Errorf("%s: answeringNode = %q, %v; want %q, %v", c.name, node, got, c.node, c.ok)
		}
	}
}

func sprintf(format, s string) string {
	return fmt.Sprintf(format, s)
}

func FuzzAnsweringNode(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4:5;branch=z9hG4bKx\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nServer: twinpbx/a\r\nContent-Length: 0\r\n\r\n"), "c")
	f.Add([]byte("SIP/2.0 200\r\n\r\n"), "")
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), "c")
	f.Fuzz(func(t *testing.T, data []byte, callID string) {
		node, ok := answeringNode(data, callID)
		if ok && node == "" {
			t.Errorf("an answer that names no node counted")
		}
	})
}

func TestKeyAlarm(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var k keyAlarm
	steps := []struct {
		after time.Duration
		count uint64
		up    bool
		since time.Duration
	}{
		{0, 0, false, 0},
		{time.Second, 3, true, time.Second},
		{5 * time.Second, 3, true, time.Second},
		{8 * time.Second, 5, true, time.Second},
		{17 * time.Second, 5, true, time.Second},
		{19 * time.Second, 5, false, 0},
		{30 * time.Second, 6, true, 30 * time.Second},
	}
	for _, st := range steps {
		up, since := k.observe(st.count, t0.Add(st.after))
		if up != st.up || (up && !since.Equal(t0.Add(st.since))) {
			t.Fatalf("at +%s count %d: up=%v since=%v, want %v since +%s", st.after, st.count, up, since, st.up, st.since)
		}
	}
}
