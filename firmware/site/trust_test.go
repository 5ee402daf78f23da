package site

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

// members of the test site: box3 forwards from 10.80.0.13.
func testMembers(name string) []net.IP {
	if name == "box3" {
		return []net.IP{net.ParseIP("10.80.0.13")}
	}
	return nil
}

func forwardedInvite(t testing.TB) *sip.Request {
	t.Helper()
	data, err := os.ReadFile("testdata/forwarded-invite.sip")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.ParseMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("10.80.0.13:5060")
	return req
}

func TestTrust(t *testing.T) {
	keys, err := deriveKeys("nstest-site-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	other, err := deriveKeys("another-site-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		// signer signs the request (nil: not signed); edit changes it
		// after signing.
		signer *trust
		member string
		edit   func(req *sip.Request)
		want   error
	}{
		{"valid", newTrust(keys.trust, clock, testMembers), "box3", nil, nil},
		{"no header", nil, "", nil, ErrNotForwarded},
		{"signed with another key", newTrust(other.trust, clock, testMembers), "box3", nil, errBadMAC},
		{"Call-ID changed", newTrust(keys.trust, clock, testMembers), "box3", func(r *sip.Request) {
			*r.CallID() = sip.CallIDHeader("another-call")
		}, errBadMAC},
		{"callee changed", newTrust(keys.trust, clock, testMembers), "box3", func(r *sip.Request) { r.Recipient.User = "102" }, errBadMAC},
		{"member renamed", newTrust(keys.trust, clock, testMembers), "box3", func(r *sip.Request) {
			h := r.GetHeader(TrustHeader)
			r.ReplaceHeader(sip.NewHeader(TrustHeader, strings.Replace(h.Value(), "box3", "box2", 1)))
		}, errBadMAC},
		{"expired", newTrust(keys.trust, func() time.Time { return now.Add(-trustWindow - time.Second) }, testMembers), "box3", nil, errStale},
		{"from the future", newTrust(keys.trust, func() time.Time { return now.Add(trustWindow + time.Second) }, testMembers), "box3", nil, errStale},
		{"from a non-member address", newTrust(keys.trust, clock, testMembers), "box3", func(r *sip.Request) { r.SetSource("10.80.0.99:5060") }, errNotMember},
		{"naming a box that is not a member", newTrust(keys.trust, clock, testMembers), "box9", nil, errNotMember},
		{"malformed", nil, "", func(r *sip.Request) { r.AppendHeader(sip.NewHeader(TrustHeader, "box3 soon x")) }, errBadHeader},
		{"too few fields", nil, "", func(r *sip.Request) { r.AppendHeader(sip.NewHeader(TrustHeader, "box3")) }, errBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recv := newTrust(keys.trust, clock, testMembers)
			req := forwardedInvite(t)
			if tt.signer != nil {
				tt.signer.sign(req, tt.member)
			}
			if tt.edit != nil {
				tt.edit(req)
			}
			member, err := recv.verify(req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("verify = %q, %v; want %v", member, err, tt.want)
			}
			if tt.want == nil && member != "box3" {
				t.Errorf("verify = %q, want box3", member)
			}
		})
	}
}

func TestTrustReplay(t *testing.T) {
	keys, err := deriveKeys("nstest-site-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tr := newTrust(keys.trust, func() time.Time { return now }, testMembers)
	req := forwardedInvite(t)
	tr.sign(req, "box3")
	if _, err := tr.verify(req); err != nil {
		t.Fatalf("first use: %v", err)
	}
	again := forwardedInvite(t)
	again.AppendHeader(req.GetHeader(TrustHeader))
	if _, err := tr.verify(again); !errors.Is(err, errReplayed) {
		t.Fatalf("second use = %v, want %v", err, errReplayed)
	}
	// Once outside the window the header is refused as stale, and the
	// replay memory forgets it.
	now = now.Add(3 * trustWindow)
	if _, err := tr.verify(again); !errors.Is(err, errStale) {
		t.Fatalf("after the window = %v, want %v", err, errStale)
	}
	if n := tr.m.Seen(); n != 0 {
		t.Errorf("the replay memory holds %d headers after the window", n)
	}
}

// FuzzTrustVerify: no header value panics the check, and only a header
// made with the site key is accepted.
func FuzzTrustVerify(f *testing.F) {
	keys, err := deriveKeys("nstest-site-key-0123456789")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Add("box3 1800000000 AAAA")
	f.Add("")
	f.Add("box3 " + strconv.Itoa(1<<62) + " x y")
	f.Add("  \t ")
	f.Fuzz(func(t *testing.T, value string) {
		tr := newTrust(keys.trust, func() time.Time { return now }, testMembers)
		req := forwardedInvite(t)
		req.AppendHeader(sip.NewHeader(TrustHeader, value))
		if _, err := tr.verify(req); err == nil {
			t.Fatalf("a header not made with the key was accepted: %q", value)
		}
	})
}
