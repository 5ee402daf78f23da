package media

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestSessionLateOffer: after a late offer for leg A the relay knows no
// address for A (it sends it nothing); A's answer, from its ACK, tells it.
func TestSessionLateOffer(t *testing.T) {
	r := newTestRelay(t, 47900, 47999)
	s, err := r.Open("late")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	offer, err := s.LateOffer(A)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.State().Legs[A]; got.KnownSDP || got.SDPRTP.IsValid() || got.Hold {
		t.Errorf("after the late offer leg A is %+v, want nothing known", got)
	}
	if want := fmt.Sprintf("m=audio %d ", s.Port(B)); !strings.Contains(string(offer), want) {
		t.Errorf("the offer for leg B lacks %q:\n%s", want, offer)
	}
	answer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
	if _, err := s.Rewrite(A, []byte(answer)); err != nil {
		t.Fatal(err)
	}
	if got := s.State().Legs[A]; !got.KnownSDP || got.SDPRTP != netip.MustParseAddrPort("127.0.0.1:41000") {
		t.Errorf("after the answer leg A is %+v, want 127.0.0.1:41000", got)
	}
}
