package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// frames builds a byte stream of frames for fuzz seeds.
func frames(t testing.TB, fs ...func(w io.Writer) error) []byte {
	var b bytes.Buffer
	for _, f := range fs {
		if err := f(&b); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func frameOf(typ byte, v any) func(io.Writer) error {
	return func(w io.Writer) error {
		if p, ok := v.([]byte); ok {
			return writeFrame(w, typ, p)
		}
		return writeJSON(w, typ, v)
	}
}

// activeSeeds are streams an active could send, and broken ones.
func activeSeeds(t testing.TB) [][]byte {
	var snap bytes.Buffer
	st := openStore(t, t.TempDir(), store.Options{})
	writeMix(t, st, 0, 5)
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	cs, err := st.ChangesSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	startC := frameOf(msgStart, start{Proto: ProtocolVersion, Node: "a", Mode: modeChanges, Seq: 5})
	startS := frameOf(msgStart, start{Proto: ProtocolVersion, Node: "a", Mode: modeSnapshot, Seq: 5})
	var b bytes.Buffer
	if err := st.Snapshot(snapshotWriter{&b}); err != nil {
		t.Fatal(err)
	}
	snapFrames := b.Bytes()
	return [][]byte{
		frames(t, startC, frameOf(msgChanges, cs), frameOf(msgHeartbeat, heartbeat{Seq: 5})),
		frames(t, startC, frameOf(msgChanges, cs[2:])),
		frames(t, startS, func(w io.Writer) error { _, err := w.Write(snapFrames); return err }, frameOf(msgSnapEnd, []byte{})),
		frames(t, startS, frameOf(msgSnapChunk, snap.Bytes()[:100]), frameOf(msgSnapEnd, []byte{})),
		frames(t, startC, frameOf(msgChanges, []store.Change{{Seq: 1, Bucket: "_meta", Key: "seq", Value: []byte{1}}})),
		frames(t, startC, frameOf(msgError, []byte("going away"))),
		frames(t, frameOf(msgStart, start{Proto: ProtocolVersion, Node: "a", Mode: modeMerge, Seq: 5}), func(w io.Writer) error { _, err := w.Write(snapFrames); return err }, frameOf(msgSnapEnd, []byte{})),
		frames(t, frameOf(msgStart, start{Proto: 99, Mode: "x"})),
		{0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff, 1},
	}
}

// FuzzReceiver feeds arbitrary bytes as the active's side of the link to a
// receiver: it must not panic, and its store must stay sound. Seeds hold a
// whole snapshot, so bound minimization:
//
//	go test -run=^$ -fuzz=FuzzReceiver -fuzztime=20s -fuzzminimizetime=2s
func FuzzReceiver(f *testing.F) {
	for _, s := range activeSeeds(f) {
		f.Add(s)
	}
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(base, "st")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		st, err := store.Open(filepath.Join(dir, "s"), store.Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		active, standby := net.Pipe()
		rcv, err := NewReceiver(ReceiverConfig{
			Node: "b", Store: st, Logger: quiet(), IdleTimeout: 200 * time.Millisecond, HandshakeTimeout: 200 * time.Millisecond,
			Dial: func(context.Context) (net.Conn, error) { return standby, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer active.Close()
			// Read the hello, then play the data and read what comes back.
			if _, _, err := readFrame(active); err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, active) }()
			_, _ = active.Write(data)
		}()
		_, _ = rcv.runOnce(context.Background())
		if err := st.Check(); err != nil {
			t.Fatalf("store after the stream: %v", err)
		}
	})
}

// FuzzFrames reads arbitrary bytes as frames and decodes each payload as
// its type says: errors, never panics, and what decodes re-encodes.
func FuzzFrames(f *testing.F) {
	for _, s := range activeSeeds(f) {
		f.Add(s)
	}
	f.Add(frames(f, frameOf(msgHello, hello{Proto: 1, Node: "b", Seq: 3, LastSum: "ab"}), func(w io.Writer) error { return writeSeq(w, msgAck, 3) }))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			typ, payload, err := readFrame(r)
			if err != nil {
				return
			}
			switch typ {
			case msgChanges:
				cs, err := decodeChanges(payload)
				if err != nil {
					continue
				}
				var b bytes.Buffer
				if err := writeChanges(&b, cs); err != nil {
					t.Fatalf("re-encoding %d changes: %v", len(cs), err)
				}
				_, p2, err := readFrame(&b)
				if err != nil {
					t.Fatal(err)
				}
				cs2, err := decodeChanges(p2)
				if err != nil || len(cs2) != len(cs) {
					t.Fatalf("changes do not survive re-encoding: %v", err)
				}
			case msgAck, msgRestored:
				_, _ = decodeSeq(payload)
			case msgHello:
				var h hello
				_ = json.Unmarshal(payload, &h)
			case msgSnapChunk:
				sr := &snapshotReader{r: r, buf: payload}
				_ = sr.drain()
			}
		}
	})
}

// FuzzSender feeds arbitrary bytes as the standby's side of the link to
// the active (hello, acks, a store to merge): it must not panic, and its
// store must stay sound.
//
//	go test -run=^$ -fuzz=FuzzSender -fuzztime=20s -fuzzminimizetime=2s
func FuzzSender(f *testing.F) {
	st0 := openStore(f, f.TempDir(), store.Options{})
	writeMix(f, st0, 0, 5)
	var snapFrames bytes.Buffer
	if err := st0.Snapshot(snapshotWriter{&snapFrames}); err != nil {
		f.Fatal(err)
	}
	ack := func(typ byte, seq uint64) func(io.Writer) error {
		return func(w io.Writer) error { return writeSeq(w, typ, seq) }
	}
	f.Add(frames(f, frameOf(msgHello, hello{Proto: ProtocolVersion, Node: "b"}), ack(msgAck, 0), ack(msgAck, 3)))
	f.Add(frames(f, frameOf(msgHello, hello{Proto: ProtocolVersion, Node: "b", Seq: 9}),
		func(w io.Writer) error { _, err := w.Write(snapFrames.Bytes()); return err }, frameOf(msgSnapEnd, []byte{}), ack(msgRestored, 5)))
	f.Add(frames(f, frameOf(msgHello, hello{Proto: 7}), frameOf(msgError, []byte("x"))))
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(base, "st")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		snd := NewSender(SenderConfig{Node: "a", Logger: quiet(), IdleTimeout: 200 * time.Millisecond, HandshakeTimeout: 200 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
		st, err := store.Open(filepath.Join(dir, "s"), store.Options{Logger: quiet(), BeforeCommit: snd.BeforeCommit})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.SaveBinding(binding(1)); err != nil {
			t.Fatal(err)
		}
		activeEnd, standbyEnd := net.Pipe()
		go func() {
			defer standbyEnd.Close()
			go func() { _, _ = io.Copy(io.Discard, standbyEnd) }()
			_, _ = standbyEnd.Write(data)
		}()
		_ = snd.ServeConn(context.Background(), st, activeEnd)
		if err := st.Check(); err != nil {
			t.Fatalf("store after the stream: %v", err)
		}
	})
}
