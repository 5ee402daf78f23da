package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// TestProfileMismatch: a leg that answers SRTP with plain RTP (or the
// other way round), or SDES-SRTP with DTLS-SRTP, is refused; the same
// profile on both legs passes.
func TestProfileMismatch(t *testing.T) {
	savp := func(p *phone) []byte {
		return bytes.Replace(p.sdp("127.0.0.1"), []byte("RTP/AVP"), []byte("RTP/SAVP"), 1)
	}
	dtls := func(p *phone) []byte {
		return bytes.Replace(p.sdp("127.0.0.1"), []byte("RTP/AVP"), []byte("UDP/TLS/RTP/SAVPF"), 1)
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
		{"both DTLS-SRTP", dtls, dtls, false},
		{"SDES answered with DTLS-SRTP", savp, dtls, true},
		{"DTLS-SRTP answered with SDES", dtls, savp, true},
		{"DTLS-SRTP answered with RTP", dtls, avp, true},
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

// TestProfileSurvivesRestore: the twin that restores an SRTP call still
// refuses a re-offer that switches it to plain RTP, and takes one that
// keeps SRTP.
func TestProfileSurvivesRestore(t *testing.T) {
	savp := func(p *phone) []byte {
		return bytes.Replace(p.sdp("127.0.0.1"), []byte("RTP/AVP"), []byte("RTP/SAVP"), 1)
	}
	r := newTestRelay(t, 41020, 41039)
	s, err := r.Open("call")
	if err != nil {
		t.Fatal(err)
	}
	a, b := newPhone(t), newPhone(t)
	for _, leg := range []struct {
		l Leg
		p *phone
	}{{A, a}, {B, b}} {
		if _, err := s.Rewrite(leg.l, savp(leg.p)); err != nil {
			t.Fatal(err)
		}
	}
	blob, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var st SessionState
	if err := json.Unmarshal(blob, &st); err != nil {
		t.Fatal(err)
	}
	twin := newTestRelay(t, 41020, 41039)
	s2, err := twin.Restore(st)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Rewrite(A, a.sdp("127.0.0.1")); !errors.Is(err, sdp.ErrProfileMismatch) {
		t.Fatalf("re-offer switching the restored call to RTP: %v, want %v", err, sdp.ErrProfileMismatch)
	}
	if _, err := s2.Rewrite(A, savp(a)); err != nil {
		t.Fatalf("re-offer keeping SRTP: %v", err)
	}
}

// TestProfileMismatchConcurrent: when both legs' SDPs arrive at once, one
// SRTP and one RTP, exactly one is refused.
func TestProfileMismatchConcurrent(t *testing.T) {
	r := newTestRelay(t, 41040, 41059)
	a, b := newPhone(t), newPhone(t)
	bodies := [2][]byte{
		A: bytes.Replace(a.sdp("127.0.0.1"), []byte("RTP/AVP"), []byte("RTP/SAVP"), 1),
		B: b.sdp("127.0.0.1"),
	}
	for i := range 50 {
		s, err := r.Open(fmt.Sprintf("call-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		var errs [2]error
		var wg sync.WaitGroup
		for _, l := range []Leg{A, B} {
			wg.Go(func() { _, errs[l] = s.Rewrite(l, bodies[l]) })
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		refused := 0
		for _, err := range errs {
			if errors.Is(err, sdp.ErrProfileMismatch) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: %d of the two SDPs refused, want 1", i, refused)
		}
	}
}
