package media

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// TestProfileMismatch: a leg that answers SRTP with plain RTP (or the
// other way round) is refused; the same profile on both legs passes.
func TestProfileMismatch(t *testing.T) {
	savp := func(p *phone) []byte {
		return bytes.Replace(p.sdp("127.0.0.1"), []byte("RTP/AVP"), []byte("RTP/SAVP"), 1)
	}
	avp := func(p *phone) []byte { return p.sdp("127.0.0.1") }
	for _, tc := range []struct {
		name   string
		a, b   func(*phone) []byte
		refuse bool
	}{
		{"both SRTP", savp, savp, false},
		{"both RTP", avp, avp, false},
		{"SRTP answered with RTP", savp, avp, true},
		{"RTP answered with SRTP", avp, savp, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRelay(t, 41000, 41019)
			s, err := r.Open("call")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Rewrite(A, tc.a(newPhone(t))); err != nil {
				t.Fatal(err)
			}
			_, err = s.Rewrite(B, tc.b(newPhone(t)))
			if tc.refuse != errors.Is(err, sdp.ErrProfileMismatch) {
				t.Fatalf("answer: %v, want refused=%v", err, tc.refuse)
			}
		})
	}
}
