package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// refused are the packages init must not link, by import path prefix,
// each with the reason. Init is PID 1 of the image: it runs before
// anything else, so every package it links is package initialisation
// on the boot's critical path (under TCG a few milliseconds each) and
// bytes in the initramfs (its budget is 12 MB of xz). What init needs
// of the config is in firmware/boxconfig; the PBX runs in twinpbx.
var refused = []struct{ prefix, why string }{
	{"github.com/twinpbx/twinpbx/pbx", "the PBX runs in twinpbx, not in init"},
	{"github.com/twinpbx/twinpbx/firmware/appliance", "the appliance links the whole PBX: use firmware/boxconfig"},
	{"github.com/twinpbx/twinpbx/firmware/cluster", "the twin pair runs in twinpbx"},
	{"github.com/twinpbx/twinpbx/firmware/twin", "the twin pair runs in twinpbx"},
	{"github.com/twinpbx/twinpbx/firmware/replication", "the twin pair runs in twinpbx"},
	{"github.com/twinpbx/twinpbx/firmware/site", "the site cluster runs in twinpbx"},
	{"github.com/twinpbx/twinpbx/firmware/rollout", "rolling updates run in twinpbx"},
	{"github.com/twinpbx/twinpbx/tui", "the console is `twinpbx setup|console`, a process init starts"},
	{"github.com/emiago/", "sipgo: SIP belongs to the PBX"},
	{"github.com/pion/", "SDP and RTP belong to the PBX"},
	{"github.com/icholy/digest", "digest authentication belongs to the PBX"},
	{"github.com/miekg/dns", "DNS resolution of trunks belongs to the PBX"},
	{"github.com/hashicorp/", "memberlist and raft belong to the site cluster"},
	{"github.com/charmbracelet/", "bubbletea belongs to the console"},
}

// allowed are packages under a refused prefix that init may link: the
// leaf record types the store keeps (init opens the store to import
// and export the config).
var allowed = map[string]bool{
	"github.com/twinpbx/twinpbx/pbx/cdr":      true,
	"github.com/twinpbx/twinpbx/pbx/location": true,
}

// TestInitStaysThin fails when init's dependencies grow back towards the
// PBX. It lists what init links with `go list -deps`, for the image's
// target (linux), and names the chain of imports that brings in each
// refused package.
func TestInitStaysThin(t *testing.T) {
	const self = "github.com/twinpbx/twinpbx/init"
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".")
	cmd.Env = append(cmd.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listing init's dependencies: %v", err)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			imports[f[0]] = f[1:]
		}
	}
	if len(imports) < 50 || !slices.Contains(imports[self], self+"/boot") {
		t.Fatalf("go list -deps gave %d packages, init importing no init/boot: not init's dependencies", len(imports))
	}
	// Walk from init, breadth first, keeping how each package was
	// reached; a refused package is reported, not walked into.
	via := map[string]string{self: ""}
	queue := []string{self}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, d := range imports[p] {
			if _, seen := via[d]; seen {
				continue
			}
			via[d] = p
			if why := refusal(d); why != "" {
				chain := []string{d}
				for q := p; q != ""; q = via[q] {
					chain = append(chain, q)
				}
				slices.Reverse(chain)
				t.Errorf("init links %s: %s\n\t%s", d, why, strings.Join(chain, "\n\t→ "))
				continue
			}
			queue = append(queue, d)
		}
	}
}

// refusal says why init must not link pkg, "" when it may.
func refusal(pkg string) string {
	if allowed[pkg] {
		return ""
	}
	for _, r := range refused {
		if pkg == r.prefix || strings.HasPrefix(pkg, strings.TrimSuffix(r.prefix, "/")+"/") {
			return r.why
		}
	}
	return ""
}

func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		pkg     string
		refused bool
	}{
		{"github.com/twinpbx/twinpbx/pbx", true},
		{"github.com/twinpbx/twinpbx/pbx/b2bua", true},
		{"github.com/twinpbx/twinpbx/pbx/cdr", false},
		{"github.com/twinpbx/twinpbx/pbx/location", false},
		{"github.com/twinpbx/twinpbx/pbxtools", false},
		{"github.com/twinpbx/twinpbx/firmware/appliance", true},
		{"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat", true},
		{"github.com/twinpbx/twinpbx/firmware/twinpbx", false},
		{"github.com/twinpbx/twinpbx/firmware/boxconfig", false},
		{"github.com/twinpbx/twinpbx/firmware/store", false},
		{"github.com/emiago/sipgo/sip", true},
		{"github.com/hashicorp/memberlist", true},
		{"github.com/charmbracelet/bubbletea", true},
		{"go.etcd.io/bbolt", false},
	} {
		if got := refusal(tc.pkg) != ""; got != tc.refused {
			t.Errorf("refusal(%s) refuses: %v, want %v", tc.pkg, got, tc.refused)
		}
	}
}
