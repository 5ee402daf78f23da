package b2bua

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// secureSDP is a phone's SDP in the given protection: "sdes" keyed with
// key, "dtls" with key as its certificate fingerprint, or "plain".
func secureSDP(number string, port int, kind, key string) string {
	head := fmt.Sprintf("v=0\r\no=%s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n", number)
	switch kind {
	case "sdes":
		return head + fmt.Sprintf("m=audio %d RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s\r\na=sendrecv\r\n", port, key)
	case "dtls":
		return head + fmt.Sprintf("m=audio %d UDP/TLS/RTP/SAVP 0\r\na=fingerprint:sha-256 %s\r\na=setup:actpass\r\na=sendrecv\r\n", port, key)
	}
	return head + fmt.Sprintf("m=audio %d RTP/AVP 0\r\na=sendrecv\r\n", port)
}

// The keys of Alice, Bob and Carol, and the one Alice answers re-INVITEs
// with when she changes hers.
const keyA, keyB, keyC, keyA2 = "QUxJQ0VBTElDRUFMSUNFQUxJQ0VBTElDRUFMSUNF", "Qk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9C",
	"Q0FST0xDQVJPTENBUk9MQ0FST0xDQVJPTENBUk9M", "QUxJQ0UyQUxJQ0UyQUxJQ0UyQUxJQ0UyQUxJQ0Uy"

// keyOf is the key an SDP carries (its crypto key or fingerprint).
func keyOf(body []byte) string {
	for _, k := range []string{keyA, keyB, keyC, keyA2} {
		if strings.Contains(string(body), k) {
			return k
		}
	}
	return ""
}

// invitesAfter returns the bodies of the INVITEs p received from the n-th
// (1-based) on.
func invitesAfter(p *phone, n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	k := 0
	for _, r := range p.got {
		if r.Method == sip.INVITE {
			k++
			if k >= n {
				out = append(out, string(r.Body()))
			}
		}
	}
	return out
}

// TestSRTPBlindTransfer: Alice calls Bob, both on SRTP; Bob transfers her
// to Carol with a REFER. Carol is offered Alice's keys, Alice gets a
// re-INVITE with Carol's, and when Alice answers it with new keys Carol
// gets those too. A target that answers with another protection is hung
// up and Bob hears 488; Alice and Bob go on talking.
func TestSRTPBlindTransfer(t *testing.T) {
	for _, tc := range []struct {
		name, kind, carolKind string
		aliceRekeys           bool
		// aliceGlare: Alice's first re-INVITE crosses one of her own
		// (491); the PBX tries again.
		aliceGlare bool
		// aliceRefuses: Alice answers both tries of her re-INVITE with
		// 491; the call goes on half re-keyed, with a warning.
		aliceRefuses bool
		code         int
		// what Alice's and Carol's later INVITEs carry, in order.
		alice, carol []string
	}{
		{name: "SDES", kind: "sdes", carolKind: "sdes", code: 200, alice: []string{keyC}, carol: []string{keyA}},
		{name: "SDES, Alice changes her key", kind: "sdes", carolKind: "sdes", aliceRekeys: true, code: 200,
			alice: []string{keyC}, carol: []string{keyA, keyA2}},
		{name: "DTLS", kind: "dtls", carolKind: "dtls", code: 200, alice: []string{keyC}, carol: []string{keyA}},
		{name: "SDES, the re-INVITE crosses one of Alice's", kind: "sdes", carolKind: "sdes", aliceGlare: true, code: 200,
			alice: []string{keyC, keyC}, carol: []string{keyA}},
		{name: "SDES, Alice refuses the re-INVITE", kind: "sdes", carolKind: "sdes", aliceRefuses: true, code: 200,
			alice: []string{keyC, keyC}, carol: []string{keyA}},
		{name: "SDES to plain", kind: "sdes", carolKind: "plain", code: 488, carol: []string{keyA}},
		{name: "SDES to DTLS", kind: "sdes", carolKind: "dtls", code: 488, carol: []string{keyA}},
		{name: "plain to plain", kind: "plain", carolKind: "plain", code: 200, carol: []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warns := &logBuffer{}
			e := newEnv(t, func(o *Options) {
				o.GlareWait = 10 * time.Millisecond
				o.Logger = slog.New(slog.NewTextHandler(warns, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			carol := newPhone(t, e, "300", "answer")
			if tc.aliceGlare {
				alice.glare = 1
			}
			if tc.aliceRefuses {
				alice.glare = 2
			}
			aliceSDP := secureSDP("100", 4000, tc.kind, keyA)
			alice.setSDP(aliceSDP)
			bob.setSDP(secureSDP("200", 4002, tc.kind, keyB))
			carol.setSDP(secureSDP("300", 4004, tc.carolKind, keyC))
			e.loc.add("200", bob)
			e.loc.add("300", carol)
			if res := alice.dial("200", []byte(aliceSDP)).result(); res.StatusCode != 200 {
				t.Fatalf("call: %d", res.StatusCode)
			}
			bob.wait(sip.ACK, 1)
			if tc.aliceRekeys {
				alice.setSDP(secureSDP("100", 4000, tc.kind, keyA2))
			}
			if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:300@127.0.0.1>")); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			ns := bob.notifies(t)
			if final := ns[len(ns)-1]; !hasLine(final.Body(), fmt.Sprintf("SIP/2.0 %d", tc.code)) {
				t.Fatalf("final NOTIFY %q, want %d", final.Body(), tc.code)
			}
			if tc.code != 200 {
				carol.wait(sip.BYE, 1)
				if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
					t.Fatalf("BYE after the refused transfer: %d", res.StatusCode)
				}
				bob.wait(sip.BYE, 1)
			} else {
				bob.wait(sip.BYE, 1)
				if len(tc.alice) > 0 {
					alice.wait(sip.INVITE, len(tc.alice))
				}
				carol.wait(sip.INVITE, len(tc.carol))
				// Both re-INVITEs are done once Carol can hang up.
				eventually(t, "the key exchange to end", func() bool {
					e.b.mu.Lock()
					defer e.b.mu.Unlock()
					for _, c := range e.b.calls {
						c.mu.Lock()
						busy := c.busyOffer
						c.mu.Unlock()
						if busy {
							return false
						}
					}
					return true
				})
			}
			for _, p := range []struct {
				who  string
				ph   *phone
				want []string
			}{{"Alice", alice, tc.alice}, {"Carol", carol, tc.carol}} {
				got := invitesAfter(p.ph, 1)
				var keys []string
				for _, b := range got {
					keys = append(keys, keyOf([]byte(b)))
				}
				if strings.Join(keys, ",") != strings.Join(p.want, ",") {
					t.Errorf("%s's INVITEs carry keys %q, want %q", p.who, keys, p.want)
				}
				for _, b := range got {
					if tc.kind != "plain" && !strings.Contains(b, "SAVP") {
						t.Errorf("%s offered a plain profile:\n%s", p.who, b)
					}
				}
			}
			if halfKeyed := strings.Contains(warns.String(), "did not take its new peer's keys"); halfKeyed != tc.aliceRefuses {
				t.Errorf("warned of a half re-keyed call: %v, want %v; warnings:\n%s", halfKeyed, tc.aliceRefuses, warns)
			}
			if tc.code == 200 {
				if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
					t.Fatalf("BYE in the transferred call: %d", res.StatusCode)
				}
				alice.wait(sip.BYE, 1)
			}
		})
	}
}

// logBuffer collects log lines written from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSRTPAttendedTransfer: Alice talks to Bob and to Carol, all on
// SRTP, and joins them with a REFER replacing her call with Carol. Each
// held Alice's keys; each gets one re-INVITE with the other's. Parties
// whose protection differs are not joined: Alice hears 488 and both
// calls go on.
func TestSRTPAttendedTransfer(t *testing.T) {
	for _, tc := range []struct {
		name, bobKind, carolKind string
		code                     int
	}{
		{name: "SDES", bobKind: "sdes", carolKind: "sdes", code: 200},
		{name: "DTLS", bobKind: "dtls", carolKind: "dtls", code: 200},
		{name: "plain REFER call, SDES replaced call", bobKind: "plain", carolKind: "sdes", code: 488},
		{name: "SDES REFER call, plain replaced call", bobKind: "sdes", carolKind: "plain", code: 488},
		{name: "DTLS and SDES", bobKind: "dtls", carolKind: "sdes", code: 488},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			carol := newPhone(t, e, "300", "answer")
			bob.setSDP(secureSDP("200", 4002, tc.bobKind, keyB))
			carol.setSDP(secureSDP("300", 4004, tc.carolKind, keyC))
			e.loc.add("200", bob)
			e.loc.add("300", carol)
			if res := alice.dial("200", []byte(secureSDP("100", 4000, tc.bobKind, keyA))).result(); res.StatusCode != 200 {
				t.Fatalf("call 1: %d", res.StatusCode)
			}
			bob.wait(sip.ACK, 1)
			call1 := alice.call()
			if res := alice.dial("300", []byte(secureSDP("100", 4000, tc.carolKind, keyA2))).result(); res.StatusCode != 200 {
				t.Fatalf("call 2: %d", res.StatusCode)
			}
			carol.wait(sip.ACK, 1)
			call2 := alice.call()
			if res := alice.requestOn(call1, sip.REFER, nil, referReplacing("300", call2, false)); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			n := alice.wait(sip.NOTIFY, 2)
			if !hasLine(n.Body(), fmt.Sprintf("SIP/2.0 %d", tc.code)) || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "terminated") {
				t.Fatalf("final NOTIFY %q, want %d", n.String(), tc.code)
			}
			if tc.code != 200 {
				if got := len(e.b.Calls()); got != 2 {
					t.Errorf("%d calls after the refused transfer, want 2", got)
				}
				for _, c := range []struct {
					d    *Dialog
					peer *phone
				}{{call1, bob}, {call2, carol}} {
					if res := alice.requestOn(c.d, sip.BYE, nil); res.StatusCode != 200 {
						t.Fatalf("BYE after the refused transfer: %d", res.StatusCode)
					}
					c.peer.wait(sip.BYE, 1)
				}
				return
			}
			for _, p := range []struct {
				who  string
				ph   *phone
				want string
			}{{"Bob", bob, keyC}, {"Carol", carol, keyB}} {
				inv := p.ph.wait(sip.INVITE, 2)
				if got := keyOf(inv.Body()); got != p.want {
					t.Errorf("%s's re-INVITE carries key %q, want %q:\n%s", p.who, got, p.want, inv.Body())
				}
				if !hasLine(inv.Body(), "SAVP") || !hasLine(inv.Body(), "a=sendrecv") {
					t.Errorf("%s's re-INVITE offers %q", p.who, inv.Body())
				}
			}
			// The exchange is over: each got exactly one re-INVITE.
			if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("BYE in the joined call: %d", res.StatusCode)
			}
			bob.wait(sip.BYE, 1)
			for _, p := range []*phone{bob, carol} {
				if got := p.count(sip.INVITE); got != 2 {
					t.Errorf("%s got %d INVITEs, want 2", p.number, got)
				}
			}
		})
	}
}
