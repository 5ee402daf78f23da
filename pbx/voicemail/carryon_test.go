package voicemail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// portAt lends exactly the given port on 127.0.0.1, as the relay's
// LeaseAt does on the virtual IP.
func portAt(port int) (PortLease, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))))
	if err != nil {
		return nil, err
	}
	return ephemeral{c}, nil
}

// cdrLog collects the CDRs a service writes.
type cdrLog struct {
	mu   sync.Mutex
	recs []cdr.Record
}

func (l *cdrLog) add(r cdr.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}

func (l *cdrLog) all() []cdr.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]cdr.Record(nil), l.recs...)
}

// storedSamples is how much audio the store holds of the one mailbox
// call in progress (-1 when none is stored).
func storedSamples(t *testing.T, st RecordingStore) (int, []byte) {
	t.Helper()
	all, _ := st.VoicemailRecordings()
	for _, r := range all {
		c, _, _, a, err := decodeCall(r[0], r[1:])
		if err != nil {
			t.Fatalf("the stored call cannot be read: %v", err)
		}
		return c.Samples, a
	}
	return -1, nil
}

// TestCarryOnAfterHandover: a box records a message and hands over; its
// twin, on the same store, reopens the RTP port the caller sends to and
// records on into the same message, which ends with the caller's BYE:
// one message holding what was saved before and what came after, no BYE
// to the caller, one CDR hung up by the caller.
func TestCarryOnAfterHandover(t *testing.T) {
	st := NewMemStore()
	a, pbxA := testServiceOn(t, st, func(srv *sipgo.Server, s *Service) {
		srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
			s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202", CallerName: "Bob"})
		})
	})
	b, pbxB := testServiceOn(t, st)
	b.o.RTPPortAt = portAt
	var cdrsA, cdrsB cdrLog
	a.o.CDR, b.o.CDR = cdrsA.add, cdrsB.add

	c := newCaller(t)
	req, res, to := c.dial(pbxA, "202", "201")
	stop := make(chan struct{})
	talking := make(chan struct{})
	go func() { defer close(talking); c.talk(to, stop) }()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-talking
	})
	waitfor.Cond(t, 30*time.Second, "1.2 s of audio stored", func() bool {
		n, _ := storedSamples(t, st)
		return n > 9600
	})

	a.Abandon()
	waitfor.Cond(t, 30*time.Second, "the box that handed over to let the call go", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.sessions) == 0
	})
	before, beforeAudio := storedSamples(t, st)
	b.TakeOver()
	b.mu.Lock()
	_, carried := b.sessions[req.CallID().Value()]
	b.mu.Unlock()
	if !carried {
		t.Fatal("the twin did not carry the call on")
	}
	// The twin saves what comes after the takeover in further parts.
	waitfor.Cond(t, 30*time.Second, "a second more stored by the twin", func() bool {
		n, _ := storedSamples(t, st)
		return n > before+8000
	})
	close(stop)
	<-talking
	c.bye(pbxB, req, res)

	waitfor.Cond(t, 30*time.Second, "the message", func() bool {
		msgs, _ := b.Mailboxes().List("201")
		return len(msgs) > 0 && len(cdrsB.all()) > 0
	})
	msgs, _ := b.Mailboxes().List("201")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want one", len(msgs))
	}
	m := msgs[0]
	if m.CallID != req.CallID().Value() || m.Caller != "202" || m.CallerName != "Bob" || m.Codec != PCMA {
		t.Errorf("message %+v", m)
	}
	if min := time.Duration(before+8000) * time.Second / 8000; m.Duration < min {
		t.Errorf("message of %v, want at least %v (saved before the handover and a second after)", m.Duration, min)
	}
	audio, _ := st.VoicemailAudio("201", m.ID)
	if !bytes.HasPrefix(audio, beforeAudio) {
		t.Error("the message does not begin with the audio saved before the handover")
	}
	if cs := cdrsB.all(); len(cs) != 1 || cs[0].HangupBy != "caller" || cs[0].CallID != m.CallID || cs[0].Disp != CDRVoicemail {
		t.Errorf("CDRs of the twin %+v, want one hung up by the caller", cs)
	}
	if cs := cdrsA.all(); len(cs) != 0 {
		t.Errorf("CDRs of the box that handed over %+v, want none", cs)
	}
	if n, _ := storedSamples(t, st); n != -1 {
		t.Error("the call is still stored after it ended")
	}
	if n := c.byes.Load(); n != 0 {
		t.Errorf("%d BYEs to the caller of a call carried on", n)
	}
}

// bye hangs up the dialog of req and its 200 through pbx.
func (c *caller) bye(pbx string, req *sip.Request, res *sip.Response) {
	c.t.Helper()
	bye := sip.NewRequest(sip.BYE, res.Contact().Address)
	bye.AppendHeader(req.From())
	bye.AppendHeader(res.To())
	bye.AppendHeader(req.CallID())
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo + 1, MethodName: sip.BYE})
	bye.SetDestination(pbx)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.cl.Do(ctx, bye)
	if err != nil {
		c.t.Fatalf("BYE: %v", err)
	}
	if r.StatusCode != 200 {
		c.t.Fatalf("BYE answered %d", r.StatusCode)
	}
}

// TestCarryOnFallback: a stored call that cannot be carried on is
// finished as before: the message kept as saved, a CDR, and BYE.
func TestCarryOnFallback(t *testing.T) {
	sec := bytes.Repeat([]byte{0xff}, 12000)
	tests := []struct {
		name   string
		kind   string
		audio  []byte
		edit   func(*savedCall)
		portAt func(int) (PortLease, error)
	}{
		{name: "port taken", kind: callDeposit, audio: sec, portAt: func(int) (PortLease, error) { return nil, errors.New("in use") }},
		{name: "no port stored", kind: callDeposit, audio: sec, edit: func(c *savedCall) { c.RTPPort = 0 }},
		{name: "no caller address stored", kind: callDeposit, audio: sec, edit: func(c *savedCall) { c.Remote = "" }},
		{name: "saved audio far off the stream", kind: callDeposit, audio: sec, edit: func(c *savedCall) { c.From = 1 << 40 }},
		{name: "no reopening here", kind: callDeposit, audio: sec},
		{name: "listening", kind: callListen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewMemStore()
			s, _ := testServiceOn(t, st)
			var cdrs cdrLog
			s.o.CDR = cdrs.add
			if tc.name != "no reopening here" {
				s.o.RTPPortAt = portAt
				if tc.portAt != nil {
					s.o.RTPPortAt = tc.portAt
				}
			}
			free, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				t.Fatal(err)
			}
			port := free.LocalAddr().(*net.UDPAddr).Port
			free.Close()
			c := newCaller(t)
			id := "call-" + tc.name
			var v savedCall
			if err := json.Unmarshal(storedCall(t, s, c, id, tc.kind, tc.audio), &v); err != nil {
				t.Fatal(err)
			}
			v.RTPPort, v.Remote, v.SSRC, v.Base = port, c.rtp.LocalAddr().String(), 5, 0
			if tc.edit != nil {
				tc.edit(&v)
			}
			rec, _ := json.Marshal(v)
			if err := st.PutVoicemailRecording(id, rec, 0, tc.audio); err != nil {
				t.Fatal(err)
			}
			s.TakeOver()
			waitfor.Cond(t, 20*time.Second, "the BYE", func() bool { return c.byes.Load() == 1 })
			if all, _ := st.VoicemailRecordings(); len(all) != 0 {
				t.Errorf("%d mailbox calls still stored", len(all))
			}
			msgs, _ := s.Mailboxes().List("201")
			if want := len(tc.audio) > 0; want != (len(msgs) == 1) || len(msgs) > 1 {
				t.Errorf("messages %+v", msgs)
			}
			if cs := cdrs.all(); len(cs) != 1 || cs[0].HangupBy != "system" {
				t.Errorf("CDRs %+v, want one hung up by system", cs)
			}
		})
	}
}

// TestStoredCallCarriesOnState: the record of a message being recorded
// holds our RTP port, the caller's RTP address and the stream's origin.
func TestStoredCallCarriesOnState(t *testing.T) {
	st := NewMemStore()
	s, pbx := testServiceOn(t, st, func(srv *sipgo.Server, s *Service) {
		srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
			s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202"})
		})
	})
	c := newCaller(t)
	to := c.call(pbx)
	stop := make(chan struct{})
	talking := make(chan struct{})
	go func() { defer close(talking); c.talk(to, stop) }()
	t.Cleanup(func() { close(stop); <-talking })
	var rec *savedCall
	waitfor.Cond(t, 30*time.Second, "audio stored", func() bool {
		all, _ := st.VoicemailRecordings()
		for _, r := range all {
			rec, _, _, _, _ = decodeCall(r[0], r[1:])
			return rec != nil && rec.Parts > 0
		}
		return false
	})
	if rec.RTPPort != int(to.Port()) || rec.Remote != c.rtp.LocalAddr().String() || rec.SSRC != 5 || rec.Events != 101 {
		t.Errorf("stored port %d, caller %s, SSRC %d, events %d; want %d, %s, 5, 101",
			rec.RTPPort, rec.Remote, rec.SSRC, rec.Events, to.Port(), c.rtp.LocalAddr())
	}
	// The caller's first packet starts the stream (timestamp 0); the
	// recording began some packets later, at the beep.
	if rec.From != 0 || rec.Base == 0 || rec.Base%160 != 0 {
		t.Errorf("first saved sample at offset %d of a stream from timestamp %d", rec.From, rec.Base)
	}
	// Stop while the caller still answers the BYE.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.Close(ctx)
}

// TestCarryOnFromStore: a box that restarts finds a message being
// recorded in its store and the caller still sending: it reopens the
// stored port and places the caller's later packets after the saved
// audio by their timestamps, the lost second between as silence; the
// caller's BYE ends it with one message and a CDR with the stored times.
func TestCarryOnFromStore(t *testing.T) {
	st := NewMemStore()
	s, pbx := testServiceOn(t, st)
	s.o.RTPPortAt = portAt
	var cdrs cdrLog
	s.o.CDR = cdrs.add
	free, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	port := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	c := newCaller(t)
	const id = "call-from-store"
	saved := bytes.Repeat([]byte{1}, 8000) // a second from timestamp 4000
	var v savedCall
	if err := json.Unmarshal(storedCall(t, s, c, id, callDeposit, saved), &v); err != nil {
		t.Fatal(err)
	}
	v.Codec, v.RTPPort, v.Remote, v.SSRC, v.Base, v.From = PCMA, port, c.rtp.LocalAddr().String(), 5, 4000, 0
	rec, _ := json.Marshal(v)
	if err := st.PutVoicemailRecording(id, rec, 0, saved); err != nil {
		t.Fatal(err)
	}
	s.ensureFinished()
	s.mu.Lock()
	_, carried := s.sessions[id]
	s.mu.Unlock()
	if !carried {
		t.Fatal("the stored call was not carried on")
	}

	// The caller's stream goes on a second after the saved audio ends.
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for i := range 50 {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(100 + i), Timestamp: uint32(4000 + 16000 + 160*i), SSRC: 5}, Payload: bytes.Repeat([]byte{2}, 160)}
		b, _ := p.Marshal()
		if _, err := c.rtp.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	waitfor.Cond(t, 30*time.Second, "the audio after the gap stored", func() bool {
		n, _ := storedSamples(t, st)
		return n == 24000
	})

	bye := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", User: "201", Host: "127.0.0.1"})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "202", Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", "theirs")
	bye.AppendHeader(from)
	toH := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "201", Host: "127.0.0.1"}, Params: sip.NewParams()}
	toH.Params.Add("tag", "ours")
	bye.AppendHeader(toH)
	cid := sip.CallIDHeader(id)
	bye.AppendHeader(&cid)
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 9, MethodName: sip.BYE})
	bye.SetDestination(pbx)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.cl.Do(ctx, bye)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v %v", res, err)
	}

	waitfor.Cond(t, 30*time.Second, "the message", func() bool {
		msgs, _ := s.Mailboxes().List("201")
		return len(msgs) > 0 && len(cdrs.all()) > 0
	})
	msgs, _ := s.Mailboxes().List("201")
	if len(msgs) != 1 || msgs[0].Duration != 3*time.Second || !msgs[0].Time.Equal(v.Answered) {
		t.Fatalf("messages %+v, want one of 3 s at the stored answer", msgs)
	}
	want := append(append(append([]byte(nil), saved...), bytes.Repeat([]byte{PCMA.Silence()}, 8000)...), bytes.Repeat([]byte{2}, 8000)...)
	if got, _ := st.VoicemailAudio("201", msgs[0].ID); !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("the message (%d bytes) is not the saved second, a second of silence and the second after (%d bytes): from byte %d on", len(got), len(want), i)
	}
	if cs := cdrs.all(); len(cs) != 1 || cs[0].HangupBy != "caller" || !cs[0].Start.Equal(v.Start) || !cs[0].Answer.Equal(v.Answered) {
		t.Errorf("CDRs %+v, want one hung up by the caller with the stored times", cs)
	}
	if n := c.byes.Load(); n != 0 {
		t.Errorf("%d BYEs to the caller", n)
	}
}
