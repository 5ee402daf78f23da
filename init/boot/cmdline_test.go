package boot

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Params
		wantErr []string // substrings, one per expected error
	}{
		{
			name: "empty",
			line: "",
			want: Params{Board: DefaultBoard},
		},
		{
			name: "qemu test line",
			line: "console=ttyS0,115200 panic=-1 twinpbx.ip=10.0.2.15/24 twinpbx.gw=10.0.2.2 twinpbx.debug.hang=5s\n",
			want: Params{Board: DefaultBoard, Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"), Hang: 5 * time.Second},
		},
		{
			name: "everything",
			line: "twinpbx.board=apu2 twinpbx.ip=192.168.1.10/24 twinpbx.xip=169.254.0.1/30 twinpbx.data=/dev/vda twinpbx.modules=e1000,,softdog",
			want: Params{Board: "apu2", Addr: netip.MustParsePrefix("192.168.1.10/24"), CrossAddr: netip.MustParsePrefix("169.254.0.1/30"),
				DataDevice: "/dev/vda", Modules: []string{"e1000", "softdog"}},
		},
		{
			name:    "bad address keeps the rest",
			line:    "twinpbx.ip=10.0.2.300/24 twinpbx.board=qemu twinpbx.gw=10.0.2.2",
			want:    Params{Board: "qemu", Gateway: netip.MustParseAddr("10.0.2.2")},
			wantErr: []string{"twinpbx.ip"},
		},
		{
			name:    "address without prefix",
			line:    "twinpbx.ip=10.0.2.15",
			want:    Params{Board: DefaultBoard},
			wantErr: []string{"twinpbx.ip"},
		},
		{
			name:    "IPv6 not yet",
			line:    "twinpbx.ip=fd00::1/64 twinpbx.gw=fd00::2",
			want:    Params{Board: DefaultBoard},
			wantErr: []string{"twinpbx.ip", "twinpbx.gw"},
		},
		{
			name:    "gateway off the LAN",
			line:    "twinpbx.ip=10.0.2.15/24 twinpbx.gw=10.0.3.2",
			want:    Params{Board: DefaultBoard, Addr: netip.MustParsePrefix("10.0.2.15/24")},
			wantErr: []string{"outside 10.0.2.0/24"},
		},
		{
			name:    "bad data device and module",
			line:    "twinpbx.data=vda twinpbx.data=/dev/../etc/x twinpbx.modules=../evil,e1000",
			want:    Params{Board: DefaultBoard, Modules: []string{"e1000"}},
			wantErr: []string{"twinpbx.data", "twinpbx.data", "../evil"},
		},
		{
			name:    "bad hang and empty board",
			line:    "twinpbx.debug.hang=soon twinpbx.debug.hang=-1s twinpbx.board=",
			want:    Params{Board: DefaultBoard},
			wantErr: []string{"hang", "positive", "empty board"},
		},
		{
			name:    "unknown setting named",
			line:    "twinpbx.ipp=1 quiet",
			want:    Params{Board: DefaultBoard},
			wantErr: []string{"unknown setting twinpbx.ipp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParseCmdline(tt.line)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCmdline(%q)\n got %+v\nwant %+v", tt.line, got, tt.want)
			}
			if len(errs) != len(tt.wantErr) {
				t.Fatalf("errors: got %v, want %d matching %q", errs, len(tt.wantErr), tt.wantErr)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.wantErr[i]) {
					t.Errorf("error %d = %q, want it to mention %q", i, e, tt.wantErr[i])
				}
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"console=ttyS0 twinpbx.ip=10.0.2.15/24 twinpbx.gw=10.0.2.2",
		"twinpbx.data=/dev/vda twinpbx.modules=a,b twinpbx.debug.hang=5s",
		"twinpbx.board= twinpbx.xip=::1/128 twinpbx.",
		"\x00twinpbx.ip=\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, _ := ParseCmdline(line)
		if p.Board == "" {
			t.Fatal("empty board")
		}
		if p.Hang < 0 {
			t.Fatalf("negative hang %v", p.Hang)
		}
		if p.Addr.IsValid() && !p.Addr.Addr().Is4() {
			t.Fatalf("non-IPv4 address %v", p.Addr)
		}
		if p.Gateway.IsValid() && p.Addr.IsValid() && !p.Addr.Masked().Contains(p.Gateway) {
			t.Fatalf("gateway %v outside %v", p.Gateway, p.Addr)
		}
		if p.DataDevice != "" && !strings.HasPrefix(p.DataDevice, "/dev/") {
			t.Fatalf("data device %q", p.DataDevice)
		}
		for _, m := range p.Modules {
			if m == "" || strings.ContainsAny(m, "/.") {
				t.Fatalf("module %q", m)
			}
		}
	})
}
