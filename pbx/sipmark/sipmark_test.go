package sipmark

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const testHeader = "X-Test-Mark"

var (
	testKey   = []byte("0123456789abcdef0123456789abcdef")
	otherKey  = []byte("fedcba9876543210fedcba9876543210")
	testEpoch = time.Unix(1_800_000_000, 0)
)

// senders of the tests: box-b sends from 10.0.0.2.
func senders(name string) []net.IP {
	if name == "box-b" {
		return []net.IP{net.ParseIP("10.0.0.2")}
	}
	return nil
}

func marker(t testing.TB, key []byte, now time.Time, replays bool) *Marker {
	t.Helper()
	m, err := New(Options{Header: testHeader, Key: key, Senders: senders, RefuseReplays: replays,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func register(t testing.TB) *sip.Request {
	t.Helper()
	data, err := os.ReadFile("testdata/register.sip")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.ParseMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("10.0.0.2:5060")
	return req
}

func TestVerify(t *testing.T) {
	const claim = "udp:192.168.1.50:5062"
	tests := []struct {
		name string
		// signer marks the request (nil: not marked) as sender with
		// claim; edit changes it afterwards.
		signer        *Marker
		sender, claim string
		edit          func(*sip.Request)
		want          error
	}{
		{"with a claim", marker(t, testKey, testEpoch, false), "box-b", claim, nil, nil},
		{"without a claim", marker(t, testKey, testEpoch, false), "box-b", "", nil, nil},
		{"not marked", nil, "", "", nil, ErrNotMarked},
		{"another key", marker(t, otherKey, testEpoch, false), "box-b", claim, nil, ErrBadMAC},
		{"claim changed", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) {
			h := r.GetHeader(testHeader)
			v := strings.Replace(h.Value(), claim, "udp:192.168.1.66:5062", 1)
			r.ReplaceHeader(sip.NewHeader(testHeader, v))
		}, ErrBadMAC},
		{"claim removed", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) {
			f := strings.Fields(r.GetHeader(testHeader).Value())
			r.ReplaceHeader(sip.NewHeader(testHeader, f[0]+" "+f[1]+" "+f[3]))
		}, ErrBadMAC},
		{"Call-ID changed", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) {
			cid := sip.CallIDHeader("other")
			r.ReplaceHeader(&cid)
		}, ErrBadMAC},
		{"CSeq changed", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) { r.CSeq().SeqNo++ }, ErrBadMAC},
		{"user changed", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) { r.Recipient.User = "102" }, ErrBadMAC},
		{"too old", marker(t, testKey, testEpoch.Add(-DefaultWindow-time.Second), false), "box-b", claim, nil, ErrStale},
		{"from the future", marker(t, testKey, testEpoch.Add(DefaultWindow+time.Second), false), "box-b", claim, nil, ErrStale},
		{"from another address", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) { r.SetSource("10.0.0.9:5060") }, ErrNotSender},
		{"naming an unknown sender", marker(t, testKey, testEpoch, false), "box-z", claim, nil, ErrNotSender},
		{"two marks", marker(t, testKey, testEpoch, false), "box-b", claim, func(r *sip.Request) {
			r.AppendHeader(sip.HeaderClone(r.GetHeader(testHeader)))
		}, ErrMalformed},
		{"malformed", nil, "", "", func(r *sip.Request) { r.AppendHeader(sip.NewHeader(testHeader, "box-b soon x")) }, ErrMalformed},
		{"too many fields", nil, "", "", func(r *sip.Request) { r.AppendHeader(sip.NewHeader(testHeader, "a 1 b c d")) }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := register(t)
			if tt.signer != nil {
				if err := tt.signer.Sign(req, tt.sender, tt.claim); err != nil {
					t.Fatal(err)
				}
			}
			if tt.edit != nil {
				tt.edit(req)
			}
			mk, err := marker(t, testKey, testEpoch, false).Verify(req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && (mk.Sender != tt.sender || mk.Claim != tt.claim || !mk.At.Equal(testEpoch)) {
				t.Errorf("mark = %+v, want sender %q claim %q at %v", mk, tt.sender, tt.claim, testEpoch)
			}
		})
	}
}

// TestMarkWire: the marks of a fixed request, key and time, as every
// version writes them (computed apart from this code): a box during a
// rolling update, or a site member on another version, checks marks made
// by the one before, so the MAC's input must never change.
func TestMarkWire(t *testing.T) {
	m := marker(t, testKey, testEpoch, false)
	for _, tt := range []struct{ claim, want string }{
		{"", "box-b 1800000000 MpwY1qkVUhk1j5hKjPdUHybmzlz61-KFHHOmGl0bM2s"},
		{"udp:192.168.1.50:5062", "box-b 1800000000 udp:192.168.1.50:5062 pXucL-IEOVJCpVrITnFAlRre3TEdpoXDF1Ls6yNITg4"},
	} {
		req := register(t)
		if err := m.Sign(req, "box-b", tt.claim); err != nil {
			t.Fatal(err)
		}
		if got := req.GetHeader(testHeader).Value(); got != tt.want {
			t.Errorf("mark with claim %q:\n got %s\nwant %s", tt.claim, got, tt.want)
		}
	}
}

// BenchmarkVerify is the check of one forwarded request's mark, which
// the receiving PBX makes for every request it is given.
func BenchmarkVerify(b *testing.B) {
	m := marker(b, testKey, testEpoch, false)
	req := register(b)
	if err := m.Sign(req, "box-b", "udp:192.168.1.50:5062"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Verify(req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSignRefusesNonTokens(t *testing.T) {
	m := marker(t, testKey, testEpoch, false)
	for _, c := range []struct{ sender, claim string }{
		{"", "x"}, {"a b", ""}, {"box-b", "udp:1.2.3.4:5 x"}, {strings.Repeat("a", MaxField+1), ""}, {"box-b", "a,b"},
	} {
		req := register(t)
		if err := m.Sign(req, c.sender, c.claim); err == nil {
			t.Errorf("Sign(%q, %q) accepted", c.sender, c.claim)
		}
		if req.GetHeader(testHeader) != nil {
			t.Errorf("Sign(%q, %q) left a mark", c.sender, c.claim)
		}
	}
}

func TestReplays(t *testing.T) {
	now := testEpoch
	for _, refuse := range []bool{false, true} {
		t.Run("refuse="+strconv.FormatBool(refuse), func(t *testing.T) {
			m, err := New(Options{Header: testHeader, Key: testKey, Senders: senders, RefuseReplays: refuse,
				Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			req := register(t)
			if err := m.Sign(req, "box-b", "udp:192.168.1.50:5062"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Verify(req); err != nil {
				t.Fatalf("first use: %v", err)
			}
			_, err = m.Verify(req)
			if refuse && !errors.Is(err, ErrReplayed) || !refuse && err != nil {
				t.Fatalf("second use = %v (refusing replays: %v)", err, refuse)
			}
			if got, want := m.Seen(), map[bool]int{false: 0, true: 1}[refuse]; got != want {
				t.Errorf("replay memory holds %d, want %d", got, want)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	if _, err := New(Options{Key: testKey}); err == nil {
		t.Error("no header name accepted")
	}
	if _, err := New(Options{Header: testHeader, Key: []byte("short")}); err == nil {
		t.Error("a short key accepted")
	}
}

// FuzzVerify: no mark value panics the check or is accepted without the
// key, and Parse takes back whatever Sign wrote.
func FuzzVerify(f *testing.F) {
	f.Add("box-b 1800000000 AAAA", "box-b", "udp:192.168.1.50:5062")
	f.Add("", "a", "")
	f.Add("box-b "+strconv.Itoa(1<<62)+" x y", "b", "tcp:[2001:db8::1]:5060")
	f.Add("  \t ", "c", "d")
	f.Add("a -5 b c", "e", "")
	f.Fuzz(func(t *testing.T, value, sender, claim string) {
		m := marker(t, testKey, testEpoch, true)
		req := register(t)
		req.AppendHeader(sip.NewHeader(testHeader, value))
		if _, err := m.Verify(req); err == nil {
			t.Fatalf("a mark not made with the key was accepted: %q", value)
		}
		req = register(t)
		if m.Sign(req, sender, claim) != nil {
			return
		}
		s, _, c, _, err := Parse(req.GetHeader(testHeader).Value())
		if err != nil || s != sender || c != claim {
			t.Fatalf("Parse(Sign(%q, %q)) = %q, %q, %v", sender, claim, s, c, err)
		}
		_, err = m.Verify(req)
		if want := map[bool]error{true: nil, false: ErrNotSender}[sender == "box-b"]; !errors.Is(err, want) {
			t.Fatalf("a fresh mark by %q: %v, want %v", sender, err, want)
		}
	})
}
