package auth

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/icholy/digest"
)

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name, in string
		want     credentials
		err      string // part of the error; "" for none
	}{
		{
			name: "sipp",
			in:   `Digest username="10000",realm="branch.example",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="AAAAAGk",response="0a4f113b",algorithm=MD5`,
			want: credentials{username: "10000", realm: "branch.example", cnonce: "6b8b4567", nc: 1, qop: "auth", uri: "sip:127.0.0.1:5060", nonce: "AAAAAGk", response: "0a4f113b", algorithm: "MD5"},
		},
		{
			name: "spaces, tabs, upper-case names and scheme, opaque skipped",
			in:   "DIGEST Username = \"100\" ,\tREALM=\"b\", Opaque=\"xyz\", URI=\"sip:b\" , response=\"00\", nonce=\"n\", NC=0000000a, QOP=\"auth\", CNONCE=\"c\", UserHash=TRUE",
			want: credentials{username: "100", realm: "b", uri: "sip:b", response: "00", nonce: "n", nc: 10, qop: "auth", cnonce: "c", userhash: true},
		},
		{
			name: "escapes in a quoted string",
			in:   `Digest username="a\"b\\c", realm="x"`,
			want: credentials{username: `a"b\c`, realm: "x"},
		},
		{
			name: "a comma inside a quoted string",
			in:   `Digest uri="sip:a,b", realm="x"`,
			want: credentials{uri: "sip:a,b", realm: "x"},
		},
		{
			name: "the last of a repeated name counts",
			in:   `Digest realm="a", realm="b"`,
			want: credentials{realm: "b"},
		},
		{
			name: "SHA-256 as a token",
			in:   `Digest algorithm=SHA-256, nc=ffffffff`,
			want: credentials{algorithm: "SHA-256", nc: 0xffffffff},
		},
		{name: "Basic scheme", in: `Basic YWxhZGRpbjpvcGVuc2VzYW1l`, err: "not a Digest"},
		{name: "scheme glued to a name", in: `Digestusername="a"`, err: "not a Digest"},
		{name: "no parameters", in: `Digest   `, err: "no parameters"},
		{name: "quote not closed", in: `Digest username="abc`, err: "not closed"},
		{name: "backslash before the end", in: `Digest username="abc\"`, err: "not closed"},
		{name: "missing comma", in: `Digest username="a" realm="b"`, err: "want a comma"},
		{name: "trailing comma", in: `Digest username="a",`, err: "want a parameter name"},
		{name: "empty element", in: `Digest username="a",,realm="b"`, err: "want a parameter name"},
		{name: "no equals sign", in: `Digest username`, err: "without a value"},
		{name: "empty value", in: `Digest username=, realm="b"`, err: "without a value"},
		{name: "unquoted URI", in: `Digest uri=sip:a`, err: "want a comma"},
		{name: "nc not hex", in: `Digest nc=zz`, err: "nc"},
		{name: "nc too long", in: `Digest nc=100000000`, err: "nc"},
		{name: "negative nc", in: `Digest nc=-1`, err: "nc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCredentials(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			case tc.err == "" && got != tc.want:
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func BenchmarkParseCredentials(b *testing.B) {
	const h = `Digest username="10000",realm="branch.example",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="AAAAAGkkE8hnY2Z3Ymd4eWQyZzRrY3Z5",response="0a4f113b0a4f113b0a4f113b0a4f113b",algorithm=MD5`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCredentials(h); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseCredentials checks the parser against icholy/digest's, which it
// replaced for speed: where both read a header they must agree. Ours is
// more lenient (tabs, upper-case names, all token characters, nc up to
// ffffffff) and stricter where that one takes nonsense (an empty name, a
// negative nc), so only headers both accept are compared, and the
// comparison lowers names for the other parser, which knows only
// lower-case ones.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{
		`Digest username="10000",realm="branch.example",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="AAAAAGk",response="0a4f113b",algorithm=MD5`,
		`Digest username="a\"b", realm="x", uri="sip:a,b"`,
		`Digest realm="a", realm="b", nc=7fffffff, userhash=true`,
		"DIGEST Username = \"100\" ,\tREALM=\"b\"",
		`Digest username="abc`,
		`Digest nc=-1`,
		`Digest =x`,
		`Basic abc`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		ours, err := parseCredentials(h)
		if err != nil || !utf8.ValidString(h) {
			return // the other parser turns invalid UTF-8 into U+FFFD
		}
		theirs, err := digest.ParseCredentials(lowerNames(h))
		if err != nil {
			return
		}
		want := credentials{
			username: theirs.Username, realm: theirs.Realm, nonce: theirs.Nonce, uri: theirs.URI,
			response: theirs.Response, algorithm: theirs.Algorithm, cnonce: theirs.Cnonce, qop: theirs.QOP,
			nc: uint32(theirs.Nc), userhash: theirs.Userhash,
		}
		if ours != want {
			t.Fatalf("header %q:\nours   %+v\ntheirs %+v", h, ours, want)
		}
	})
}

// lowerNames lowers the parameter names of a header our parser read.
func lowerNames(h string) string {
	var b strings.Builder
	b.WriteString(h[:len(digestScheme)])
	s := h[len(digestScheme):]
	for s != "" {
		// At a name: everything up to the first '=' outside quotes.
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(strings.ToLower(s[:eq+1]))
		s = s[eq+1:]
		// Copy the value, quoted or not, up to the next comma outside quotes.
		inQuote, esc := false, false
		i := 0
	value:
		for ; i < len(s); i++ {
			c := s[i]
			if esc {
				esc = false
				continue
			}
			switch {
			case c == '\\' && inQuote:
				esc = true
			case c == '"':
				inQuote = !inQuote
			case c == ',' && !inQuote:
				break value
			}
		}
		b.WriteString(s[:i])
		s = s[i:]
	}
	return b.String()
}
