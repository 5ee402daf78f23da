package b2bua

import "testing"

func TestReferReplaces(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    replaces
		found   bool
		wantErr bool
	}{
		{name: "blind transfer", in: "<sip:300@pbx>"},
		{name: "other URI headers", in: "<sip:300@pbx?Subject=hi>"},
		{name: "escaped", in: "<sip:300@pbx?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>",
			want: replaces{CallID: "abc@host", ToTag: "1", FromTag: "2"}, found: true},
		{name: "unescaped, early-only, other header after", in: `"C" <sip:300@pbx?Replaces=abc;from-tag=2;to-tag=1;early-only&X=y>`,
			want: replaces{CallID: "abc", ToTag: "1", FromTag: "2", EarlyOnly: true}, found: true},
		{name: "lower-case name", in: "<sip:300@pbx?replaces=c%3Bto-tag%3Da%3Bfrom-tag%3Db>",
			want: replaces{CallID: "c", ToTag: "a", FromTag: "b"}, found: true},
		{name: "no from-tag", in: "<sip:300@pbx?Replaces=abc%3Bto-tag%3D1>", found: true, wantErr: true},
		{name: "no Call-ID", in: "<sip:300@pbx?Replaces=%3Bto-tag%3D1%3Bfrom-tag%3D2>", found: true, wantErr: true},
		{name: "bad escape", in: "<sip:300@pbx?Replaces=abc%zz>", found: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := referReplaces(tt.in)
			if found != tt.found || (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
				t.Errorf("referReplaces(%q) = %+v, %v, %v; want %+v, %v, error %v", tt.in, got, found, err, tt.want, tt.found, tt.wantErr)
			}
		})
	}
}

func TestReplacesMatches(t *testing.T) {
	d := &Dialog{CallID: "c1", LocalTag: "pbx", RemoteTag: "phone"}
	tests := []struct {
		name string
		r    replaces
		want bool
	}{
		{"recipient's view", replaces{CallID: "c1", ToTag: "pbx", FromTag: "phone"}, true},
		{"the phone's own view", replaces{CallID: "c1", ToTag: "phone", FromTag: "pbx"}, true},
		{"other Call-ID", replaces{CallID: "c2", ToTag: "pbx", FromTag: "phone"}, false},
		{"one tag wrong", replaces{CallID: "c1", ToTag: "pbx", FromTag: "x"}, false},
		{"both tags the same", replaces{CallID: "c1", ToTag: "pbx", FromTag: "pbx"}, false},
	}
	for _, tt := range tests {
		if got := tt.r.matches(d); got != tt.want {
			t.Errorf("%s: matches = %v, want %v", tt.name, got, tt.want)
		}
	}
	if (replaces{CallID: "c1", ToTag: "pbx", FromTag: ""}).matches(&Dialog{CallID: "c1", LocalTag: "pbx"}) {
		t.Error("an early dialog without remote tag matched an empty from-tag")
	}
}

func TestOnHoldAndCodecs(t *testing.T) {
	sendrecv, sendonly := audioSDP("1", 4000, "sendrecv"), audioSDP("1", 4000, "sendonly")
	pcma := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 8\r\n"
	zero := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n"
	for _, tt := range []struct {
		body string
		want bool
	}{{sendrecv, false}, {sendonly, true}, {audioSDP("1", 4000, "recvonly"), true}, {audioSDP("1", 4000, "inactive"), true}, {zero, true}, {"", false}} {
		if got := onHold([]byte(tt.body)); got != tt.want {
			t.Errorf("onHold(%q) = %v", tt.body, got)
		}
	}
	if !codecsMatch([]byte(sendrecv), []byte(sendonly)) || codecsMatch([]byte(sendrecv), []byte(pcma)) || !codecsMatch(nil, nil) {
		t.Error("codecsMatch")
	}
	if got := string(sendRecv([]byte(sendonly))); got != sendrecv {
		t.Errorf("sendRecv = %q", got)
	}
}

func FuzzReferReplaces(f *testing.F) {
	for _, s := range []string{"<sip:300@pbx?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", "<sip:1@h?Replaces=a;to-tag=b;from-tag=c&x=y>",
		"sip:1@h?replaces=%", "<?Replaces=;;;=>", "<sip:x@y?Replaces=a%3Bearly-only>", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, found, err := referReplaces(s)
		if err == nil && found && (r.CallID == "" || r.ToTag == "" || r.FromTag == "") {
			t.Errorf("referReplaces(%q) accepted %+v", s, r)
		}
		if !found && err != nil {
			t.Errorf("referReplaces(%q): error %v without a Replaces", s, err)
		}
	})
}

func FuzzParseReplaces(f *testing.F) {
	for _, s := range []string{"abc@h;to-tag=1;from-tag=2", "a;from-tag=2;to-tag=1;early-only", "a", ";;", "a;to-tag=;from-tag=", "a;TO-TAG=x;From-Tag=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReplaces(s)
		if err == nil && (r.CallID == "" || r.ToTag == "" || r.FromTag == "") {
			t.Errorf("parseReplaces(%q) accepted %+v", s, r)
		}
	})
}
