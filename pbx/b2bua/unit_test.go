package b2bua

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

func TestBestFinal(t *testing.T) {
	tests := []struct {
		name  string
		codes []int
		want  int
	}{
		{"nothing came back", nil, 480},
		{"one busy", []int{486}, 486},
		{"all busy", []int{486, 486}, 486},
		{"busy and unavailable", []int{486, 480}, 480},
		{"unavailable then busy", []int{480, 486}, 480},
		{"decline wins over busy", []int{486, 603}, 603},
		{"busy everywhere wins", []int{480, 600, 404}, 600},
		{"4xx before 5xx", []int{500, 404}, 404},
		{"callee overloaded is not our overload", []int{503}, 500},
		{"timeouts", []int{408, 408}, 408},
		{"redirect is lowest class", []int{486, 302}, 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bestFinal(tt.codes); got != tt.want {
				t.Errorf("bestFinal(%v) = %d, want %d", tt.codes, got, tt.want)
			}
		})
	}
}

func TestDisposition(t *testing.T) {
	tests := []struct {
		code int
		want cdr.Disposition
	}{
		{200, cdr.Answered}, {486, cdr.Busy}, {600, cdr.Busy}, {480, cdr.NoAnswer},
		{487, cdr.Cancelled}, {404, cdr.Failed}, {603, cdr.Failed}, {488, cdr.Failed}, {503, cdr.Failed},
	}
	for _, tt := range tests {
		if got := disposition(tt.code); got != tt.want {
			t.Errorf("disposition(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestReferTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "<sip:300@pbx.example>", want: "300"},
		{in: "sip:300@10.0.0.1;transport=udp", want: "300"},
		{in: `"Carol" <sip:300@pbx>`, want: "300"},
		{in: "<sip:300@pbx?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", want: "300"},
		{in: "<tel:+4930123>", wantErr: true},
		{in: "<sip:pbx.example>", wantErr: true},
		{in: "", wantErr: true},
		{in: "<<<", wantErr: true},
	}
	for _, tt := range tests {
		got, err := referTarget(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("referTarget(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzReferTarget(f *testing.F) {
	for _, s := range []string{"<sip:300@pbx>", "sip:1@h;a=b?c=d", `"x" <sip:2@h>`, "<tel:1>", "", "<sip:@>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := referTarget(s)
		if err == nil && n == "" {
			t.Errorf("referTarget(%q) accepted an empty number", s)
		}
	})
}

// readRequest parses a request fixture from testdata (LF line ends are
// turned into CRLF).
func readRequest(t testing.TB, name string) *sip.Request {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.NewParser().ParseSIP([]byte(strings.ReplaceAll(string(data), "\n", "\r\n")))
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("%s is not a request", name)
	}
	return req
}

func TestDialogFromInvite(t *testing.T) {
	req := readRequest(t, "invite.txt")
	req.SetSource("192.0.2.10:40000")
	d, err := uasDialog(req, "ourtag")
	if err != nil {
		t.Fatal(err)
	}
	if d.CallID != "call-1@phone" || d.RemoteTag != "ftag" || d.LocalTag != "ourtag" || d.RemoteSeq != 101 ||
		d.RemoteTarget != "sip:100@192.168.1.20:5062" || d.Peer != "192.0.2.10:40000" || !d.UAS ||
		len(d.RouteSet) != 2 || d.RouteSet[0] != "sip:p1.example;lr" {
		t.Fatalf("dialog %+v", d)
	}
	via := sip.Uri{Scheme: "sip", User: "pbx", Host: "192.0.2.1", Port: 5060}
	bye, err := d.newRequest(sip.BYE, via)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 3261 §12.2.1.1: target, tags swapped, next local CSeq, route set.
	if bye.Recipient.String() != "sip:100@192.168.1.20:5062" || bye.Destination() != "192.0.2.10:40000" {
		t.Errorf("BYE goes to %s via %s", bye.Recipient.String(), bye.Destination())
	}
	if ft, _ := bye.From().Params.Get("tag"); ft != "ourtag" {
		t.Errorf("BYE From tag %q", ft)
	}
	if tt, _ := bye.To().Params.Get("tag"); tt != "ftag" {
		t.Errorf("BYE To tag %q", tt)
	}
	if bye.CSeq().SeqNo != 1 || bye.CSeq().MethodName != sip.BYE {
		t.Errorf("BYE CSeq %v", bye.CSeq())
	}
	if rs := bye.GetHeaders("Route"); len(rs) != 2 {
		t.Errorf("BYE has %d Route headers", len(rs))
	}
	if v := bye.Via(); v.Host != "192.0.2.1" || v.Port != 5060 {
		t.Errorf("BYE Via %s", v.Value())
	}
}

func TestDialogFromInviteRefused(t *testing.T) {
	for _, drop := range []string{"From", "Contact", "CSeq"} {
		req := readRequest(t, "invite.txt")
		req.RemoveHeader(drop)
		if _, err := uasDialog(req, "t"); err == nil {
			t.Errorf("INVITE without %s accepted", drop)
		}
	}
	req := readRequest(t, "invite.txt")
	req.From().Params.Remove("tag")
	if _, err := uasDialog(req, "t"); err == nil {
		t.Error("INVITE without From tag accepted")
	}
}

func TestCancelFor(t *testing.T) {
	inv := readRequest(t, "invite.txt")
	inv.SetDestination("192.0.2.10:40000")
	c := cancelFor(inv)
	// RFC 3261 §9.1: same Request-URI, top Via, Call-ID, From, To, CSeq
	// number; method CANCEL.
	if c.Method != sip.CANCEL || c.Recipient.String() != inv.Recipient.String() {
		t.Errorf("CANCEL line %s", c.StartLine())
	}
	if c.Via().Value() != inv.Via().Value() {
		t.Errorf("CANCEL Via %s, INVITE Via %s", c.Via().Value(), inv.Via().Value())
	}
	if len(c.GetHeaders("Via")) != 1 {
		t.Error("CANCEL must carry only the top Via")
	}
	for _, h := range []string{"From", "To", "Call-ID"} {
		if c.GetHeader(h).Value() != inv.GetHeader(h).Value() {
			t.Errorf("CANCEL %s %q, INVITE %q", h, c.GetHeader(h).Value(), inv.GetHeader(h).Value())
		}
	}
	if c.CSeq().SeqNo != inv.CSeq().SeqNo || c.CSeq().MethodName != sip.CANCEL {
		t.Errorf("CANCEL CSeq %v", c.CSeq())
	}
	if c.Destination() != "192.0.2.10:40000" || len(c.Body()) != 0 {
		t.Errorf("CANCEL to %s with body %q", c.Destination(), c.Body())
	}
}

// FuzzDialog builds in-dialog requests from dialogs restored from
// arbitrary stored strings: bad state must give an error, never a panic.
func FuzzDialog(f *testing.F) {
	f.Add("sip:100@10.0.0.1:5060", "sip:200@pbx", "sip:100@pbx", "sip:p1;lr")
	f.Add("", "", "", "")
	f.Add("sip:[::1]:5", "<sip:x>", "tel:1", "sip:;lr")
	f.Fuzz(func(t *testing.T, target, local, remote, route string) {
		d := Dialog{CallID: "c", LocalTag: "l", RemoteTag: "r", RemoteTarget: target, LocalURI: local, RemoteURI: remote, RouteSet: []string{route}, Peer: "127.0.0.1:5060"}
		req, err := d.newRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060})
		if err != nil {
			return
		}
		if _, err := sip.NewParser().ParseSIP([]byte(req.String())); err != nil {
			t.Errorf("built request does not parse back: %v\n%s", err, req.String())
		}
	})
}
