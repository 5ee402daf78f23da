package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	psdp "github.com/pion/sdp/v3"
)

// fixture reads testdata/name with CRLF line ends, as SDP travels.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n") + "\r\n")
}

// TestRoundTrip checks that the library reproduces real phone SDPs byte
// for byte, so a rewrite changes only what it means to.
func TestRoundTrip(t *testing.T) {
	names, err := filepath.Glob("testdata/*.sdp")
	if err != nil || len(names) < 10 {
		t.Fatalf("fixtures: %v %v", names, err)
	}
	for _, n := range names {
		t.Run(filepath.Base(n), func(t *testing.T) {
			in := fixture(t, filepath.Base(n))
			var sd psdp.SessionDescription
			if err := sd.Unmarshal(in); err != nil {
				t.Fatalf("parse: %v", err)
			}
			out, err := sd.Marshal()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if !bytes.Equal(in, out) {
				t.Errorf("round trip differs:\n--- in\n%s--- out\n%s", in, out)
			}
		})
	}
}

var relay = netip.MustParseAddr("192.0.2.10")

func lines(b []byte) []string { return strings.Split(strings.TrimSpace(string(b)), "\r\n") }

func TestRewrite(t *testing.T) {
	only := func(names ...string) func(string) bool {
		return func(n string) bool {
			return slices.ContainsFunc(names, func(s string) bool { return strings.EqualFold(s, n) })
		}
	}
	tests := []struct {
		name    string
		fixture string
		ports   []int
		filter  func(string) bool
		want    []string // lines the output must have
		notWant []string // line prefixes the output must not have
		streams []Stream // fields checked: Media, Addr, Port, RTCPPort, RTCPMux, Direction, Hold
	}{
		{
			name: "baresip", fixture: "baresip-offer.sdp", ports: []int{20000},
			want: []string{"o=- 2717402834 597946787 IN IP4 127.0.0.1", "c=IN IP4 192.0.2.10",
				"m=audio 20000 RTP/AVP 0 8 9 96 101", "a=sendrecv", "a=fmtp:96 stereo=1;sprop-stereo=1"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("127.0.0.1"), Port: 2456, RTCPPort: 2457, Direction: SendRecv}},
		},
		{
			name: "baresip filtered to G.711", fixture: "baresip-offer.sdp", ports: []int{20000}, filter: only("PCMA", "PCMU"),
			want:    []string{"m=audio 20000 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"},
			notWant: []string{"a=rtpmap:9 ", "a=rtpmap:96", "a=fmtp:96"},
		},
		{
			name: "sipp default", fixture: "sipp-default.sdp", ports: []int{20002},
			want:    []string{"m=audio 20002 RTP/AVP 0", "c=IN IP4 192.0.2.10"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("127.0.0.1"), Port: 16000, RTCPPort: 16001, Direction: SendRecv}},
		},
		{
			name: "yealink static payload without rtpmap filtered", fixture: "yealink-offer.sdp", ports: []int{30000}, filter: only("G722"),
			want:    []string{"m=audio 30000 RTP/AVP 9 101", "a=ptime:20"},
			notWant: []string{"a=fmtp:18", "a=rtpmap:0 "},
		},
		{
			name: "snom", fixture: "snom-offer.sdp", ports: []int{30002},
			want: []string{"m=audio 30002 RTP/AVP 9 0 8 3 99 112 18 101", "a=rtcp-xr:rcvr-rtt=all voip-metrics"},
		},
		{
			name: "cisco media-level c and bandwidth", fixture: "cisco-offer.sdp", ports: []int{30004}, filter: only("PCMU"),
			want:    []string{"c=IN IP4 192.0.2.10", "m=audio 30004 RTP/AVP 0 101", "b=TIAS:64000", "o=Cisco-SIPUA 7424 0 IN IP4 172.16.5.40"},
			notWant: []string{"a=fmtp:114", "a=fmtp:18", "a=fmtp:116"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("172.16.5.40"), Port: 27906, RTCPPort: 27907, Direction: SendRecv}},
		},
		{
			name: "linphone ICE dropped, video rejected", fixture: "linphone-offer.sdp", ports: []int{30006, 30008},
			want: []string{"m=audio 30006 RTP/AVP 96 97 98 0 8 18 101 99 100", "a=rtcp:30007",
				"m=video 0 RTP/AVP 96 97", "c=IN IP4 192.0.2.10", "a=rtcp-fb:* trr-int 1000"},
			notWant: []string{"a=candidate", "a=ice-", "a=rtcp:9079", "c=IN IP4 203.0.113.17", "c=IN IP4 192.168.178.44"},
			streams: []Stream{
				{Media: "audio", Addr: netip.MustParseAddr("203.0.113.17"), Port: 7078, RTCPPort: 7079, Direction: SendRecv},
				{Media: "video", Addr: netip.MustParseAddr("203.0.113.17"), Port: 9078, RTCPPort: 9079, Direction: SendRecv},
			},
		},
		{
			name: "hold with sendonly", fixture: "hold-sendonly.sdp", ports: []int{30010},
			want:    []string{"a=sendonly", "m=audio 30010 RTP/AVP 0 101", "c=IN IP4 192.0.2.10"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("192.168.10.51"), Port: 11786, RTCPPort: 11787, Direction: SendOnly, Hold: true}},
		},
		{
			name: "old-style hold keeps 0.0.0.0", fixture: "hold-c0.sdp", ports: []int{30012},
			want:    []string{"c=IN IP4 0.0.0.0", "m=audio 30012 RTP/AVP 8 101"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("0.0.0.0"), Port: 49170, RTCPPort: 49171, Direction: SendRecv, Hold: true}},
		},
		{
			name: "rtcp-mux", fixture: "rtcp-mux.sdp", ports: []int{30014},
			want:    []string{"a=rtcp-mux", "a=rtcp:30014", "m=audio 30014 RTP/AVP 111 0 8 126", "a=rtcp-fb:111 transport-cc"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("198.51.100.7"), Port: 52000, RTCPPort: 52000, RTCPMux: true, Direction: SendRecv}},
		},
		{
			name: "a=rtcp port", fixture: "rtcp-attr.sdp", ports: []int{30016},
			want:    []string{"a=rtcp:30017", "m=audio 30016 RTP/AVP 0 8 101"},
			streams: []Stream{{Media: "audio", Addr: netip.MustParseAddr("192.168.0.20"), Port: 5004, RTCPPort: 5009, Direction: SendRecv}},
		},
		{
			name: "audio and video", fixture: "audio-video.sdp", ports: []int{30018},
			want: []string{"m=audio 30018 RTP/AVP 8 0 101", "m=video 0 RTP/AVP 99", "b=AS:512"},
		},
		{
			name: "port range collapses to the relay's one pair", fixture: "port-range.sdp", ports: []int{30022},
			want: []string{"m=audio 30022 RTP/AVP 0"},
		},
		{
			name: "audio without a relay port is rejected", fixture: "audio-video.sdp", ports: []int{0, 30020},
			want: []string{"m=audio 0 RTP/AVP 8 0 101", "m=video 0 RTP/AVP 99"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fixture(t, tt.fixture)
			out, streams, err := Rewrite(in, relay, tt.ports, tt.filter)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			got := lines(out)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, nw := range tt.notWant {
				for _, l := range got {
					if strings.HasPrefix(l, nw) {
						t.Errorf("output has %q:\n%s", l, out)
					}
				}
			}
			// Every c= line either names the relay or keeps a hold.
			for _, l := range got {
				if strings.HasPrefix(l, "c=") && l != "c=IN IP4 192.0.2.10" && l != "c=IN IP4 0.0.0.0" {
					t.Errorf("connection line %q escapes the relay", l)
				}
			}
			if again, err := Parse(out); err != nil || len(again) != len(streams) {
				t.Errorf("output does not re-parse: %v", err)
			}
			for i, w := range tt.streams {
				if i >= len(streams) {
					t.Fatalf("got %d streams, want at least %d", len(streams), i+1)
				}
				g := streams[i]
				if g.Media != w.Media || g.Addr != w.Addr || g.Port != w.Port || g.RTCPPort != w.RTCPPort ||
					g.RTCPMux != w.RTCPMux || g.Direction != w.Direction || g.Hold != w.Hold {
					t.Errorf("stream %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestRewritePayloadTypes(t *testing.T) {
	_, streams, err := Rewrite(fixture(t, "baresip-offer.sdp"), relay, []int{20000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint8{0, 8, 9, 96, 101}; !slices.Equal(streams[0].PayloadTypes, want) {
		t.Errorf("payload types %v, want %v", streams[0].PayloadTypes, want)
	}
	if streams[0].Proto != "RTP/AVP" {
		t.Errorf("proto %q", streams[0].Proto)
	}
}

func TestRewriteIPv6Relay(t *testing.T) {
	out, _, err := Rewrite(fixture(t, "sipp-default.sdp"), netip.MustParseAddr("2001:db8::1"), []int{20000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(lines(out), "c=IN IP6 2001:db8::1") {
		t.Errorf("no IPv6 connection line:\n%s", out)
	}
}

func TestRewriteErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		addr   netip.Addr
		ports  []int
		filter func(string) bool
		want   error
	}{
		{name: "not SDP", body: "hello world", addr: relay, ports: []int{2000}, want: ErrBadSDP},
		{name: "empty", body: "", addr: relay, ports: []int{2000}, want: ErrBadSDP},
		{name: "no m= line", body: "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n", addr: relay, ports: []int{2000}, want: ErrNoMedia},
		{name: "port out of range", body: "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n", addr: relay, ports: []int{2000}, want: ErrBadSDP},
		{name: "payload type not a number", body: "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP x\r\n", addr: relay, ports: []int{2000}, want: ErrBadSDP},
		{name: "a=rtcp garbage", body: "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:99999\r\n", addr: relay, ports: []int{2000}, want: ErrBadSDP},
		{name: "no common codec", body: string(fixture(t, "yealink-offer.sdp")), addr: relay, ports: []int{2000},
			filter: func(n string) bool { return n == "opus" }, want: ErrNoCommonCodec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := Rewrite([]byte(tt.body), tt.addr, tt.ports, tt.filter)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if out != nil {
				t.Errorf("output on error: %q", out)
			}
		})
	}
	bad := []struct {
		name  string
		addr  netip.Addr
		ports []int
	}{
		{"relay port too high", relay, []int{65535}},
		{"relay port negative", relay, []int{-2}},
		{"no relay address", netip.Addr{}, []int{2000}},
		{"unspecified relay address", netip.IPv4Unspecified(), []int{2000}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Rewrite(fixture(t, "sipp-default.sdp"), tt.addr, tt.ports, nil); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestRewriteKeepsInput(t *testing.T) {
	in := fixture(t, "linphone-offer.sdp")
	orig := bytes.Clone(in)
	if _, _, err := Rewrite(in, relay, []int{20000}, func(string) bool { return false }); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(in, orig) {
		t.Error("Rewrite changed its input")
	}
}

func FuzzRewrite(f *testing.F) {
	names, _ := filepath.Glob("testdata/*.sdp")
	for _, n := range names {
		f.Add(fixture(f, filepath.Base(n)), uint16(20000), true)
	}
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"), uint16(0), false)
	f.Fuzz(func(t *testing.T, body []byte, port uint16, filter bool) {
		var fl func(string) bool
		if filter {
			fl = func(n string) bool { return strings.EqualFold(n, "PCMA") }
		}
		ports := []int{int(port) &^ 1, int(port)&^1 + 2}
		out, streams, err := Rewrite(body, relay, ports, fl)
		if err != nil {
			return
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("output does not re-parse: %v\n%q", err, out)
		}
		if len(again) != len(streams) {
			t.Fatalf("%d streams became %d", len(streams), len(again))
		}
		for i, s := range again {
			if s.Port != 0 && (s.Media != "audio" || i >= len(ports) || ports[i] != s.Port) {
				t.Fatalf("stream %d port %d not a relay port", i, s.Port)
			}
		}
	})
}

func TestFirstAudio(t *testing.T) {
	for _, tc := range []struct {
		name    string
		streams []Stream
		want    int
	}{
		{"none", nil, -1},
		{"audio first", []Stream{{Media: "audio", Port: 4000}, {Media: "video", Port: 4002}}, 0},
		{"after video", []Stream{{Media: "video", Port: 4002}, {Media: "audio", Port: 4000}}, 1},
		{"rejected audio skipped", []Stream{{Media: "audio"}, {Media: "audio", Port: 4000}}, 1},
		{"only rejected audio", []Stream{{Media: "audio"}, {Media: "video", Port: 4002}}, -1},
	} {
		if got := FirstAudio(tc.streams); got != tc.want {
			t.Errorf("%s: FirstAudio = %d, want %d", tc.name, got, tc.want)
		}
	}
}
