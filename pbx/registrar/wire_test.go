package registrar

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/twinpbx/twinpbx/pbx/regwire"
)

// TestServeWireOwnsItsStrings: a binding made or refreshed from a request
// read by regwire keeps no piece of the request's text (which would keep
// the whole datagram alive as long as the binding).
func TestServeWireOwnsItsStrings(t *testing.T) {
	e := newEnv(t)
	var p regwire.Parser
	for cseq := range []int{1, 2} {
		msg := strings.ReplaceAll("REGISTER sip:branch.example SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.5:5062;branch=z9hG4bK-wireCSEQ\r\n"+
			"From: <sip:100@branch.example>;tag=a\r\nTo: <sip:100@branch.example>\r\n"+
			"Call-ID: owned-strings\r\nCSeq: CSEQ REGISTER\r\nContact: <sip:100@192.0.2.5:5062>\r\n"+
			"User-Agent: phone 1.0\r\nContent-Length: 0\r\n\r\n", "CSEQ", string(rune('1'+cseq)))
		var r regwire.Request
		if !p.Parse(msg, &r) {
			t.Fatal("not read")
		}
		if code, reason, _ := e.reg.ServeWire(&r, "100", "udp:192.0.2.5:5062", nil); code != 200 {
			t.Fatalf("%d %s", code, reason)
		}
		bs := e.loc.Lookup("100")
		if len(bs) != 1 {
			t.Fatalf("%d bindings", len(bs))
		}
		b := bs[0]
		lo := uintptr(unsafe.Pointer(unsafe.StringData(msg)))
		hi := lo + uintptr(len(msg))
		for name, s := range map[string]string{"AOR": b.AOR, "Contact": b.Contact, "Source": b.Source, "CallID": b.CallID, "UserAgent": b.UserAgent} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= lo && p < hi {
				t.Errorf("CSeq %d: the binding's %s is a piece of the request", cseq+1, name)
			}
		}
	}
}
