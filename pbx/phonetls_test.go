package pbx

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// plainOffer is an RTP offer for media on port.
func plainOffer(port int) []byte {
	return []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
}

// TestTLSPhoneReconnected: a phone registered over TLS whose connection
// is gone (as after a failover) is called over a new TLS connection the
// PBX opens to its Contact; the phone's self-signed certificate is
// accepted (phones' certificates are not checked), and the dialog goes on
// over that connection. First its mailbox tells it of a new message the
// same way (an unsolicited NOTIFY over a new TLS connection).
func TestTLSPhoneReconnected(t *testing.T) {
	seed := bytes.Repeat([]byte{5}, 32)
	cfg := tlsConfig(freeTCPPort(t))
	cfg.Voicemail = &config.Voicemail{}
	box := startTLSBox(t, cfg, pbxtest.NewStore(), seed)
	pin := box.p.Status().TLS.Fingerprint
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The callee listens for TLS on its Contact's port with a certificate
	// of its own, self-signed.
	id, err := tlscert.Derive(bytes.Repeat([]byte{6}, 32), []string{"phone-101"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	caller := newTLSPhone(t, "100", box.tlsAddr, pin)
	callee := newTLSPhone(t, "101", box.tlsAddr, pin)
	callee.dua.ContactHDR.Address.Port = ln.Addr().(*net.TCPAddr).Port
	for _, ph := range []*tlsPhone{caller, callee} {
		if err := ph.register(ctx); err != nil {
			t.Fatalf("register %s: %v", ph.user, err)
		}
	}
	var source string
	for _, bd := range box.p.Status().Registrations {
		if bd.AOR == "101" {
			source = bd.Source
		}
	}
	from, ok := strings.CutPrefix(source, "tls:")
	if !ok || from == ln.Addr().String() {
		t.Fatalf("binding source %q: want the connection the REGISTER came on", source)
	}

	// The callee's connection goes away; the PBX notices.
	conn, err := callee.ua.TransportLayer().GetConnection("tls", box.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	waitfor.Cond(t, 20*time.Second, "the PBX to drop the callee's connection", func() bool {
		c := box.p.ua.TransportLayer().Pool("tls").Get(from)
		if c == nil {
			return true
		}
		_, _ = c.TryClose()
		return false
	})
	go func() {
		_ = callee.ua.TransportLayer().ServeTLS(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{id.Cert}, MinVersion: tls.VersionTLS12}))
	}()

	if _, err := box.p.vm.Mailboxes().Save(voicemail.Message{Mailbox: "101", Caller: "100", Time: time.Now(), Codec: voicemail.PCMU, Duration: 2 * time.Second}, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-callee.notifies:
		if !strings.Contains(body, "Messages-Waiting: yes") {
			t.Errorf("the mailbox's NOTIFY says %q", body)
		}
	case <-ctx.Done():
		t.Fatal("the phone whose connection is gone was not told of its message")
	}

	callerMedia, calleeMedia := mediaSocket(t), mediaSocket(t)
	callee.answer = func([]byte) []byte { return plainOffer(calleeMedia.LocalAddr().(*net.UDPAddr).Port) }
	inv := sip.NewRequest(sip.INVITE, caller.uri("101"))
	inv.SetTransport("TLS")
	fromHdr := &sip.FromHeader{Address: caller.uri("100"), Params: sip.NewParams()}
	fromHdr.Params.Add("tag", sip.GenerateTagN(8))
	inv.AppendHeader(fromHdr)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(plainOffer(callerMedia.LocalAddr().(*net.UDPAddr).Port))
	sess, err := caller.dua.WriteInvite(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "100", Password: "secret-100-x"}); err != nil {
		t.Fatalf("call to the phone whose connection is gone: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-callee.offers:
	case <-ctx.Done():
		t.Fatal("the callee got no INVITE")
	}
	// The dialog goes on over the connection the PBX opened to the
	// Contact: the stack holds it under that address.
	contact := ln.Addr().String()
	if c := box.p.ua.TransportLayer().Pool("tls").Get(contact); c == nil {
		t.Errorf("the PBX holds no TLS connection to the callee's Contact %s", contact)
	} else {
		_, _ = c.TryClose()
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	waitfor.Cond(t, 20*time.Second, "the call to end", func() bool { return len(box.p.Status().Calls) == 0 })
}

// TestPhoneTLSConnectFails: no connection is made up where none can be.
func TestPhoneTLSConnectFails(t *testing.T) {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	c := newPhoneTLS(ua.TransportLayer(), tlscert.NewPeers(nil), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	closed := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(freeTCPPort(t)))
	if err := c.connect(ctx, closed); err == nil {
		t.Error("connected while the PBX is not running")
	}
	stop := c.start(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5061})
	t.Cleanup(stop)
	if err := c.connect(ctx, closed); err == nil {
		t.Error("connected to a port where nothing listens")
	}
	// A phone that speaks no TLS: the handshake fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("SIP/2.0 400 Bad Request\r\n\r\n"))
			_ = conn.Close()
		}
	}()
	if err := c.connect(ctx, netip.MustParseAddrPort(ln.Addr().String())); err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Errorf("connect to a plain TCP port: %v, want a handshake error", err)
	}
	if p := ua.TransportLayer().Pool("tls"); p != nil && p.Size() != 0 {
		t.Errorf("the stack holds %d TLS connections after failures", p.Size())
	}
}

// TestPhoneTLSLock: connecting to one address is serialised, however
// many calls wait for it at once, and the table forgets every address
// once nobody connects to it.
func TestPhoneTLSLock(t *testing.T) {
	c := &phoneTLS{locks: map[netip.AddrPort]*addrLock{}}
	addrs := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:5061"), netip.MustParseAddrPort("192.0.2.2:5061")}
	inside := make([]atomic.Int32, len(addrs))
	var overlap atomic.Bool
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for range 500 {
				k := g % len(addrs)
				unlock := c.lock(addrs[k])
				if inside[k].Add(1) > 1 {
					overlap.Store(true)
				}
				runtime.Gosched()
				inside[k].Add(-1)
				unlock()
			}
		})
	}
	wg.Wait()
	if overlap.Load() {
		t.Error("two connected to one address at once")
	}
	if len(c.locks) != 0 {
		t.Errorf("%d addresses left in the table", len(c.locks))
	}
}
