package auth

import (
	"strings"
	"testing"

	"github.com/icholy/digest"
)

// TestExpectedMatchesTheLibrary: our request-digest is the digest
// library's (which phones' stacks agree with, see the interop tests) for
// both algorithms, with and without qop, and for long and odd inputs.
func TestExpectedMatchesTheLibrary(t *testing.T) {
	long := strings.Repeat("x", 600) // beyond the stack buffer
	tests := []struct {
		name string
		in   digestInput
	}{
		{"MD5 with qop", digestInput{user: "100", realm: "branch.example", secret: "s3cret", method: "REGISTER", uri: "sip:branch.example", nonce: "AAAA", qop: true, nc: 1, cnonce: "c0ffee"}},
		{"SHA-256 with qop", digestInput{sha256: true, user: "100", realm: "branch.example", secret: "s3cret", method: "INVITE", uri: "sip:101@branch.example", nonce: "BBBB", qop: true, nc: 0xabcdef12, cnonce: "x"}},
		{"MD5 without qop", digestInput{user: "100", realm: "r", secret: "p", method: "REGISTER", uri: "sip:r", nonce: "n"}},
		{"SHA-256 without qop", digestInput{sha256: true, user: "100", realm: "r", secret: "p", method: "BYE", uri: "sip:r", nonce: "n"}},
		{"empty secret, large nc", digestInput{user: "u", realm: "r", method: "REGISTER", uri: "sip:r", nonce: "n", qop: true, nc: 0xffffffff, cnonce: "c"}},
		{"long inputs", digestInput{sha256: true, user: long, realm: "r", secret: long, method: "REGISTER", uri: "sip:" + long, nonce: long, qop: true, nc: 7, cnonce: long}},
		{"unknown user marker", digestInput{user: "nobody", realm: "r", secret: "\x00unknown", method: "REGISTER", uri: "sip:r", nonce: "n", qop: true, nc: 2, cnonce: "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			chal := &digest.Challenge{Realm: in.realm, Nonce: in.nonce, Algorithm: "MD5"}
			if in.sha256 {
				chal.Algorithm = "SHA-256"
			}
			if in.qop {
				chal.QOP = []string{"auth"}
			}
			lib, err := digest.Digest(chal, digest.Options{Method: in.method, URI: in.uri, Username: in.user, Password: in.secret, Count: int(in.nc), Cnonce: in.cnonce})
			if err != nil {
				t.Fatal(err)
			}
			var out [64]byte
			if got := string(out[:in.expected(&out)]); got != lib.Response {
				t.Errorf("ours %s, library %s", got, lib.Response)
			}
		})
	}
}

// TestChallengeText: the prebuilt challenge is what the digest library
// would write, so phones see the same header as before.
func TestChallengeText(t *testing.T) {
	for _, realm := range []string{"branch.example", `odd "realm" \ here`, "Zweigstelle Köln"} {
		for _, algo := range []string{"MD5", "SHA-256"} {
			for _, stale := range []bool{false, true} {
				c := digest.Challenge{Realm: realm, Nonce: "AAAAAGkkE8h", Algorithm: algo, QOP: []string{"auth"}, Stale: stale}
				if got, want := newChallengeText(realm, algo).with([]byte("AAAAAGkkE8h"), stale), c.String(); got != want {
					t.Errorf("realm %q, %s, stale %v:\nours    %s\nlibrary %s", realm, algo, stale, got, want)
				}
			}
		}
	}
}
