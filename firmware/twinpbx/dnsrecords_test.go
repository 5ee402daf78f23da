package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/resolve/resolvetest"
)

var update = flag.Bool("update", false, "rewrite the golden files of the dns-records tests")

// dataWith stores the config file in a new data folder, as
// `twinpbx config import` does offline, and returns the folder.
func dataWith(t *testing.T, configFile string) string {
	t.Helper()
	dir := t.TempDir()
	text, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := boxconfig.Import(st, text, configFile); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runDNSRecords(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"dns-records", "--data", dir}, args...), &out, &errOut)
	return out.String(), err
}

func TestDNSRecords(t *testing.T) {
	twin := dataWith(t, "testdata/dnsrecords/twin.yaml")
	standalone := dataWith(t, "testdata/dnsrecords/standalone.yaml")
	withTLS := dataWith(t, "testdata/dnsrecords/standalone-tls.yaml")
	twinTLS := dataWith(t, "testdata/dnsrecords/twin-tls.yaml")
	tests := []struct {
		name    string
		dir     string
		args    []string
		golden  string // file in testdata/dnsrecords
		wantErr string
	}{
		{name: "twin pair: VIP by default", dir: twin, golden: "twin-vip.zone"},
		{name: "twin pair: --vip", dir: twin, args: []string{"--vip"}, golden: "twin-vip.zone"},
		{name: "twin pair: both boxes", dir: twin, args: []string{"--both", "--ttl", "60"}, golden: "twin-both.zone"},
		{name: "twin pair: dnsmasq", dir: twin, args: []string{"--format", "dnsmasq"}, golden: "twin-vip.dnsmasq"},
		{name: "twin pair: both boxes, dnsmasq", dir: twin, args: []string{"--both", "--format", "dnsmasq"}, golden: "twin-both.dnsmasq"},
		{name: "twin pair: another domain", dir: twin, args: []string{"--domain", "Other.Example.Test."}, golden: "twin-other.zone"},
		{name: "standalone", dir: standalone, args: []string{"--domain", "office.example.test"}, golden: "standalone.zone"},
		{name: "standalone on udp, tcp and tls", dir: withTLS, args: []string{"--domain", "office.example.test"}, golden: "standalone-tls.zone"},
		{name: "twin pair on udp, tcp and tls: both boxes take udp and tcp", dir: twinTLS, args: []string{"--both"}, golden: "twin-tls-both.zone"},
		{name: "twin pair on udp, tcp and tls: the VIP takes tls", dir: twinTLS, golden: "twin-tls-vip.zone"},
		{name: "standalone without a domain", dir: standalone, wantErr: "give the site's domain with --domain"},
		{name: "standalone --both", dir: standalone, args: []string{"--domain", "office.example.test", "--both"}, wantErr: "needs a twin pair"},
		{name: "--vip and --both", dir: twin, args: []string{"--vip", "--both"}, wantErr: "exclude each other"},
		{name: "bad domain", dir: twin, args: []string{"--domain", "not a domain"}, wantErr: "want a DNS domain"},
		{name: "single label domain", dir: twin, args: []string{"--domain", "localhost"}, wantErr: "want a DNS domain"},
		{name: "bad format", dir: twin, args: []string{"--format", "bind"}, wantErr: "want zone or dnsmasq"},
		{name: "zero TTL", dir: twin, args: []string{"--ttl", "0"}, wantErr: "--ttl"},
		{name: "no data folder", dir: filepath.Join(t.TempDir(), "none"), wantErr: "data folder"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runDNSRecords(t, tc.dir, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/dnsrecords", tc.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run the test with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, out)
			}
			if strings.HasSuffix(tc.golden, ".zone") {
				zp := dns.NewZoneParser(strings.NewReader(out), "", golden)
				n := 0
				for _, ok := zp.Next(); ok; _, ok = zp.Next() {
					n++
				}
				if err := zp.Err(); err != nil || n == 0 {
					t.Errorf("the zone lines do not parse: %d records, %v", n, err)
				}
			}
		})
	}
}

// TestDNSRecordsResolve loads what dns-records prints into a real dnsmasq
// and resolves the site's domain the way the PBX (or a phone) would.
func TestDNSRecordsResolve(t *testing.T) {
	twin := dataWith(t, "testdata/dnsrecords/twin.yaml")
	tests := []struct {
		mode string
		want []string // per transport, the addresses in any order
	}{
		{"--vip", []string{"udp 192.0.2.10:5060", "tcp 192.0.2.10:5070"}},
		{"--both", []string{"udp 192.0.2.11:5060", "udp 192.0.2.12:5060", "tcp 192.0.2.11:5070", "tcp 192.0.2.12:5070"}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			out, err := runDNSRecords(t, twin, tc.mode, "--format", "dnsmasq")
			if err != nil {
				t.Fatal(err)
			}
			var opts []string
			for _, l := range strings.Split(out, "\n") {
				if l != "" && !strings.HasPrefix(l, "#") {
					opts = append(opts, "--"+l)
				}
			}
			addr := resolvetest.StartDNSMasq(t, 300, opts...)
			r, err := resolve.New(resolve.Config{Servers: []string{addr}})
			if err != nil {
				t.Fatal(err)
			}
			ts, err := r.ResolveString(context.Background(), "sip:branch.example.test")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range ts {
				if tg.Source != resolve.SourceNAPTR {
					t.Errorf("%s: found through %s, want NAPTR", tg, tg.Source)
				}
				got = append(got, tg.Transport+" "+tg.Addr())
			}
			// UDP first (NAPTR preference), each transport's hosts in the
			// weighted random order: compare per transport as sets.
			byTransport := func(s []string) []string {
				c := slices.Clone(s)
				sort.SliceStable(c, func(i, j int) bool { return c[i][:3] > c[j][:3] })
				for i := 0; i < len(c); {
					j := i
					for j < len(c) && c[j][:3] == c[i][:3] {
						j++
					}
					slices.Sort(c[i:j])
					i = j
				}
				return c
			}
			if !slices.Equal(byTransport(got), byTransport(tc.want)) || got[0][:3] != "udp" {
				t.Errorf("resolved %q, want %q (UDP first)", got, tc.want)
			}
		})
	}
}
