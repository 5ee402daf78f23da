package voicemail

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// partsStore is a MemStore that counts the writes of mailbox calls.
type partsStore struct {
	*MemStore
	puts atomic.Int32
}

func (s *partsStore) PutVoicemailRecording(id string, record []byte, part int, audio []byte) error {
	s.puts.Add(1)
	return s.MemStore.PutVoicemailRecording(id, record, part, audio)
}

// TestRecordingSavedInParts records a message and checks what the store
// holds meanwhile: the record and the audio so far, written every
// ChunkEvery and not for every packet; a graceful stop saves the message
// and removes the record.
func TestRecordingSavedInParts(t *testing.T) {
	st := &partsStore{MemStore: NewMemStore()}
	s, pbx := testServiceOn(t, st, func(srv *sipgo.Server, s *Service) {
		srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
			s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202", CallerName: "Bob"})
		})
	})
	c := newCaller(t)
	start := time.Now()
	to := c.call(pbx)
	stop := make(chan struct{})
	talking := make(chan struct{})
	go func() { defer close(talking); c.talk(to, stop) }()
	t.Cleanup(func() { close(stop); <-talking })

	var rec *savedCall
	var audio []byte
	// Over a second (a message is kept from MinMessage on) in three parts
	// or more.
	waitfor.Cond(t, 30*time.Second, "1.2 s of audio stored in parts", func() bool {
		all, _ := st.VoicemailRecordings()
		for _, r := range all {
			c, _, _, a, err := decodeCall(r[0], r[1:])
			if err != nil {
				t.Fatalf("the stored call cannot be read: %v", err)
			}
			rec, audio = c, a
			return c.Parts >= 3 && c.Samples > 9600
		}
		return false
	})
	// talk sends a packet every 20 ms: at most one write per 5 packets
	// (ChunkEvery is 100 ms in the tests), and one at the answer.
	packets := int(time.Since(start)/(20*time.Millisecond)) + 1
	if n := int(st.puts.Load()); n > packets/5+2 {
		t.Errorf("%d writes for at most %d packets: not bounded by ChunkEvery", n, packets)
	}
	if rec.Kind != callDeposit || rec.Mailbox != "201" || rec.Caller != "202" || rec.CallerName != "Bob" || rec.Codec != PCMA {
		t.Errorf("stored call %+v", rec)
	}
	if len(audio) != rec.Samples || len(audio) == 0 {
		t.Errorf("%d bytes of audio stored, the record says %d", len(audio), rec.Samples)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.Close(ctx)
	if all, _ := st.VoicemailRecordings(); len(all) != 0 {
		t.Errorf("%d mailbox calls stored after the box stopped", len(all))
	}
	msgs, _ := s.Mailboxes().List("201")
	if len(msgs) != 1 {
		t.Fatalf("%d messages after the stop, want 1", len(msgs))
	}
	full, _ := s.Mailboxes().st.VoicemailAudio("201", msgs[0].ID)
	if !bytes.HasPrefix(full, audio) {
		t.Error("the parts stored are not the start of the message")
	}
}

// storedCall is the record of a mailbox call a dead twin left, with the
// caller c as its peer.
func storedCall(t *testing.T, s *Service, c *caller, id, kind string, audio []byte) []byte {
	t.Helper()
	us := s.o.Contact("udp")
	v := savedCall{
		Version: savedCallVersion, Kind: kind, Mailbox: "201", Caller: "202",
		Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Answered: time.Date(2026, 1, 2, 3, 4, 25, 0, time.UTC),
		Saved: time.Date(2026, 1, 2, 3, 4, 40, 0, time.UTC), Codec: PCMU, Samples: len(audio),
		savedDialog: savedDialog{
			CallID: id, LocalTag: "ours", LocalURI: "sip:201@127.0.0.1", RemoteTag: "theirs",
			RemoteURI: "sip:202@127.0.0.1", RemoteTarget: "sip:202@" + c.sip, Transport: "UDP",
			Peer: c.sip, Us: us.String(), Seq: 1,
		},
	}
	if audio != nil {
		v.Parts = 1
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFinishCalls starts a box on a store that holds the mailbox calls
// of a box that died: each is finished once, the message recorded so far
// kept when long enough, a CDR written, the caller sent BYE.
func TestFinishCalls(t *testing.T) {
	sec := bytes.Repeat([]byte{0xff}, 8000)
	tests := []struct {
		name    string
		kind    string
		audio   []byte
		broken  bool
		saved   bool // the message is in the mailbox already
		wantMsg time.Duration
		wantBye bool
		wantCDR bool
	}{
		{name: "a second and a half recorded", kind: callDeposit, audio: append(sec, sec[:4000]...), wantMsg: 1500 * time.Millisecond, wantBye: true, wantCDR: true},
		{name: "too short", kind: callDeposit, audio: sec[:4000], wantBye: true, wantCDR: true},
		{name: "the greeting still playing", kind: callDeposit, wantBye: true, wantCDR: true},
		{name: "saved already", kind: callDeposit, audio: sec, saved: true, wantMsg: time.Second, wantBye: true, wantCDR: true},
		{name: "listening", kind: callListen, wantBye: true, wantCDR: true},
		{name: "broken record", kind: callDeposit, broken: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewMemStore()
			s, _ := testServiceOn(t, st)
			var mu sync.Mutex
			var cdrs []cdr.Record
			s.o.CDR = func(r cdr.Record) error { mu.Lock(); defer mu.Unlock(); cdrs = append(cdrs, r); return nil }
			c := newCaller(t)
			id := "call-" + strings.ReplaceAll(tc.name, " ", "-")
			rec := storedCall(t, s, c, id, tc.kind, tc.audio)
			if tc.broken {
				rec = rec[:len(rec)/2]
			}
			if err := st.PutVoicemailRecording(id, rec, 0, tc.audio); err != nil {
				t.Fatal(err)
			}
			if tc.saved {
				if _, err := s.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", CallID: id, Time: time.Now(), Duration: time.Second, Codec: PCMU}, tc.audio); err != nil {
					t.Fatal(err)
				}
			}

			s.ensureFinished()
			s.ensureFinished() // once only

			if all, _ := st.VoicemailRecordings(); len(all) != 0 {
				t.Errorf("%d mailbox calls still stored", len(all))
			}
			msgs, _ := s.Mailboxes().List("201")
			switch {
			case tc.wantMsg == 0 && len(msgs) != 0:
				t.Errorf("messages %+v, want none", msgs)
			case tc.wantMsg != 0 && (len(msgs) != 1 || msgs[0].Duration != tc.wantMsg || msgs[0].CallID != id || msgs[0].Caller != "202"):
				t.Errorf("messages %+v, want one of %v", msgs, tc.wantMsg)
			}
			if tc.wantMsg != 0 && !tc.saved {
				if got, _ := st.VoicemailAudio("201", msgs[0].ID); !bytes.Equal(got, tc.audio) {
					t.Errorf("the message holds %d bytes, want the %d stored", len(got), len(tc.audio))
				}
				if msgs[0].Codec != PCMU || !msgs[0].Time.Equal(time.Date(2026, 1, 2, 3, 4, 25, 0, time.UTC)) {
					t.Errorf("message %+v: want PCMU at the answer's time", msgs[0])
				}
			}
			mu.Lock()
			n := len(cdrs)
			if tc.wantCDR && (n != 1 || cdrs[0].HangupBy != "system" || cdrs[0].Disp != CDRVoicemail || cdrs[0].CallID != id) {
				t.Errorf("CDRs %+v, want one VOICEMAIL hung up by system", cdrs)
			}
			mu.Unlock()
			if !tc.wantCDR && n != 0 {
				t.Errorf("%d CDRs, want none", n)
			}
			if tc.wantBye {
				waitfor.Cond(t, 20*time.Second, "the BYE", func() bool { return c.byes.Load() == 1 })
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				s.Close(ctx) // any BYE would have been sent by now
				if c.byes.Load() != 0 {
					t.Errorf("%d BYEs for a record that cannot be read", c.byes.Load())
				}
			}
		})
	}
}

// FuzzDecodeCall feeds stored mailbox calls that may be damaged: read
// back or refused with an error, never a panic, and a record that reads
// writes back the same.
func FuzzDecodeCall(f *testing.F) {
	good, _ := json.Marshal(savedCall{
		Version: savedCallVersion, Kind: callDeposit, Mailbox: "201", Caller: "202", Codec: PCMA, Parts: 1, Samples: 3,
		savedDialog: savedDialog{CallID: "a@b", LocalTag: "x", LocalURI: "sip:201@10.0.0.1", RemoteTag: "y",
			RemoteURI: "sip:202@10.0.0.2", RemoteTarget: "sip:202@10.0.0.2:5060", Transport: "UDP",
			Peer: "10.0.0.2:5060", Us: "sip:10.0.0.1:5060", Seq: 7, Routes: []string{"sip:proxy;lr"}},
	})
	carried, _ := json.Marshal(savedCall{
		Version: savedCallVersion, Kind: callDeposit, Mailbox: "201", Caller: "202", Codec: PCMU, Parts: 2, Samples: 6,
		RTPPort: 16384, Remote: "10.0.0.2:6000", Events: 101, SSRC: 0xdeadbeef, Base: 0xffffff00, From: -160,
		savedDialog: savedDialog{CallID: "c@d", LocalTag: "x", LocalURI: "sip:201@10.0.0.1", RemoteTag: "y",
			RemoteURI: "sip:202@10.0.0.2", RemoteTarget: "sip:202@10.0.0.2:5060", Transport: "UDP",
			Peer: "10.0.0.2:5060", Us: "sip:10.0.0.1:5060", Seq: 7},
	})
	f.Add(carried, []byte{1, 2, 3}, 2)
	f.Add(good, []byte{1, 2, 3}, 1)
	f.Add(good, []byte(nil), 0)
	f.Add([]byte(`{"version":1,"kind":"listen","call_id":"c","local_tag":"a","remote_tag":"b","transport":"TLS","peer":"p"}`), []byte{}, 0)
	f.Add([]byte(`{"version":2}`), []byte{0}, 3)
	f.Add([]byte(`not json`), []byte{}, 0)
	f.Fuzz(func(t *testing.T, record, part []byte, n int) {
		parts := make([][]byte, min(max(n, 0), 4))
		for i := range parts {
			parts[i] = part
		}
		c, d, us, audio, err := decodeCall(record, parts)
		if err != nil || c == nil {
			return
		}
		if len(audio) != len(part)*len(parts) {
			t.Fatalf("%d bytes of audio from %d parts of %d", len(audio), len(parts), len(part))
		}
		again, err := json.Marshal(savedCall{Version: c.Version, Kind: c.Kind, Mailbox: c.Mailbox, savedDialog: saveDialog(d, us)})
		if err != nil {
			t.Fatal(err)
		}
		c2, d2, _, _, err := decodeCall(again, nil)
		if err != nil {
			t.Fatalf("a call read back cannot be read again: %v\n%s", err, again)
		}
		if c2.CallID != c.CallID || d2.remoteTarget.String() != d.remoteTarget.String() || d2.peer != d.peer {
			t.Fatalf("read back differently: %+v, want %+v", c2, c)
		}
	})
}
