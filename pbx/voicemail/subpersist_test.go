package voicemail

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSubscriptionFailover: a subscription made on one box is carried on
// by the twin that takes over (same store, as replication leaves it): the
// phone gets the twin's NOTIFYs within the same dialog, CSeq above every
// one the first box sent; an unsubscribe there removes the record.
func TestSubscriptionFailover(t *testing.T) {
	st := NewMemStore()
	a, pbxA := testServiceOn(t, st)
	sub := newSubscriber(t, pbxA)
	if res := sub.subscribe("201", "201", "message-summary", "600", "", 1); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE answered %d", res.StatusCode)
	}
	sub.notified(1)
	if _, err := a.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{1}); err != nil {
		t.Fatal(err)
	}
	sub.notified(2)
	if n := len(stored(t, st)); n != 1 {
		t.Fatalf("%d subscriptions stored, want 1", n)
	}

	// A hands over (or dies); B, on the same store, takes over.
	a.Abandon()
	b, _ := testServiceOn(t, st)
	b.TakeOver()
	if _, err := b.Mailboxes().Save(Message{Mailbox: "201", Caller: "203", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{2}); err != nil {
		t.Fatal(err)
	}
	bodies, _ := sub.notified(3)
	if !strings.Contains(bodies[2], "Voice-Message: 2/0") {
		t.Fatalf("the twin's NOTIFY %q, want 2 new", bodies[2])
	}
	sub.mu.Lock()
	ds := append([]notifyDialog(nil), sub.dialogs...)
	sub.mu.Unlock()
	if ds[2].callID != ds[0].callID || ds[2].fromTag != ds[0].fromTag {
		t.Errorf("the twin's NOTIFY is in dialog %+v, want %+v's", ds[2], ds[0])
	}
	if ds[2].cseq <= ds[1].cseq {
		t.Errorf("the twin's CSeq %d is not above the first box's %d", ds[2].cseq, ds[1].cseq)
	}
	// The raised CSeq is stored: a second failover raises from it.
	saved, err := decodeSub(stored(t, st)[ds[0].callID])
	if err != nil {
		t.Fatal(err)
	}
	if saved.d.seq < ds[2].cseq+SeqMargin-1 {
		t.Errorf("stored CSeq %d after the takeover: a second failover would reuse %d", saved.d.seq-SeqMargin, ds[2].cseq)
	}
	// The phone unsubscribes, at the twin: the record goes.
	sub.pbx = b.o.Contact("udp").Host + ":" + strconv.Itoa(b.o.Contact("udp").Port)
	if res := sub.subscribe("201", "201", "message-summary", "0", ds[0].fromTag, 3); res.StatusCode != 200 {
		t.Fatalf("unsubscribe at the twin answered %d", res.StatusCode)
	}
	if n := len(stored(t, st)); n != 0 {
		t.Errorf("%d subscriptions stored after the unsubscribe, want 0", n)
	}
}

// TestSubscriptionRestoreDrops: expired and unreadable records are
// deleted, live ones kept.
func TestSubscriptionRestoreDrops(t *testing.T) {
	st := NewMemStore()
	s, _ := testServiceOn(t, st)
	live, _ := decodeSub([]byte(`{"version":1,"box":"201","call_id":"live","local_tag":"l","local_uri":"sip:201@h","remote_tag":"r","remote_uri":"sip:201@h","remote_target":"sip:201@127.0.0.1:5999","transport":"UDP","peer":"127.0.0.1:5999","us":"sip:127.0.0.1:5060","seq":7,"expires":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`))
	if live == nil {
		t.Fatal("the live record does not decode")
	}
	b, _, err := encodeSub(live, live.expires)
	if err != nil {
		t.Fatal(err)
	}
	st.subs["live"] = b
	st.subs["old"] = []byte(strings.Replace(string(b), `"call_id":"live"`, `"call_id":"old"`, 1))
	st.subs["old"] = []byte(strings.Replace(string(st.subs["old"]), live.expires.UTC().Format(time.RFC3339Nano), "2020-01-01T00:00:00Z", 1))
	st.subs["junk"] = []byte("{")
	s.TakeOver()
	if got := stored(t, st); len(got) != 1 || got["live"] == nil {
		t.Fatalf("stored after restore: %v, want only the live one", got)
	}
	s.mu.Lock()
	got := s.subs["live"]
	s.mu.Unlock()
	if got == nil || got.d.seq != 7+2*SeqMargin {
		// decodeSub raised it once for the record, TakeOver once more.
		t.Fatalf("restored %+v", got)
	}
}

func FuzzDecodeSub(f *testing.F) {
	f.Add([]byte(`{"version":1,"box":"201","call_id":"c","local_tag":"l","local_uri":"sip:201@h","remote_tag":"r","remote_uri":"sip:201@h","remote_target":"sip:201@127.0.0.1:5999","routes":["sip:p;lr"],"transport":"UDP","peer":"127.0.0.1:5999","us":"sip:127.0.0.1:5060","seq":7,"expires":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sub, err := decodeSub(b)
		if err != nil {
			return
		}
		again, _, err := encodeSub(sub, sub.expires)
		if err != nil {
			t.Fatalf("a decoded subscription does not encode: %v", err)
		}
		if _, err := decodeSub(again); err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", again, err)
		}
	})
}

// stored is what st holds of subscriptions.
func stored(t *testing.T, st *MemStore) map[string][]byte {
	t.Helper()
	m, err := st.MWISubscriptions()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
