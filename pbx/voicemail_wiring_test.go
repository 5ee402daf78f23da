package pbx

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// vmStore is a PBX store with mailboxes that counts the reads of a
// mailbox's records.
type vmStore struct {
	*pbxtest.Store
	*voicemail.MemStore
	reads atomic.Int64
}

func (s *vmStore) Voicemails(box string) ([][]byte, error) {
	s.reads.Add(1)
	return s.MemStore.Voicemails(box)
}

// TestRegisterMailboxOnlyWhenAccepted: a REGISTER that is challenged
// costs the mailbox nothing (no read of its records, no NOTIFY); the one
// accepted gets the unsolicited message-summary NOTIFY of the message
// waiting.
func TestRegisterMailboxOnlyWhenAccepted(t *testing.T) {
	st := &vmStore{Store: pbxtest.NewStore(), MemStore: voicemail.NewMemStore()}
	meta, err := json.Marshal(voicemail.Message{ID: "m1", Mailbox: "100", Caller: "101", New: true, Time: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutVoicemail("100", "m1", meta, []byte{0xff}); err != nil {
		t.Fatal(err)
	}

	_, addr := runTestPBX(t, "31060-31079", func(cfg *config.Config, o *Options) {
		cfg.Voicemail = &config.Voicemail{}
		o.Store = st
	})

	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	register := func(cseq int, authz string) {
		t.Helper()
		raw := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-vm-%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:100@%s>;tag=vm\r\nTo: <sip:100@%s>\r\n"+
			"Call-ID: vm-reg\r\nCSeq: %d REGISTER\r\nContact: <sip:100@%s>\r\nExpires: 300\r\n%s"+
			"Content-Length: 0\r\n\r\n", addr, local, cseq, addr, addr, cseq, local, authz)
		if _, err := c.WriteTo([]byte(raw), to); err != nil {
			t.Fatal(err)
		}
	}
	// next returns the next message the phone gets.
	next := func() sip.Message {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 8192)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("waiting for a message: %v", err)
		}
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}

	before := st.reads.Load()
	register(1, "")
	res, ok := next().(*sip.Response)
	if !ok || res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials answered %v, want 401", res)
	}
	if n := st.reads.Load() - before; n != 0 {
		t.Errorf("a challenged REGISTER read the mailbox %d times, want 0", n)
	}

	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + addr,
		Username: "100", Password: "secret-100-x", Count: 1, Cnonce: "vm123"})
	if err != nil {
		t.Fatal(err)
	}
	register(2, "Authorization: "+cred.String()+"\r\n")
	if res, ok := next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("REGISTER with credentials answered %v, want 200", res)
	}
	notify, ok := next().(*sip.Request)
	if !ok || notify.Method != sip.NOTIFY {
		t.Fatalf("after the accepted REGISTER the phone got %v, want the NOTIFY", notify)
	}
	if body := string(notify.Body()); !strings.Contains(body, "Messages-Waiting: yes") {
		t.Errorf("NOTIFY body %q, want messages waiting", body)
	}
	if _, err := c.WriteTo([]byte(sip.NewResponseFromRequest(notify, 200, "OK", nil).String()), to); err != nil {
		t.Fatal(err)
	}
}
