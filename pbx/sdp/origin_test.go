package sdp

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func originLine(t *testing.T, body []byte) []string {
	t.Helper()
	for _, l := range lines(body) {
		if strings.HasPrefix(l, "o=") {
			return strings.Fields(strings.TrimPrefix(l, "o="))
		}
	}
	t.Fatalf("no o= line in\n%s", body)
	return nil
}

func TestOrigin(t *testing.T) {
	o, err := NewOrigin("twinpbx")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.10")
	offer := fixture(t, "baresip-offer.sdp")
	hold := fixture(t, "hold-sendonly.sdp")
	// Descriptions sent in turn, and whether each must raise the version.
	steps := []struct {
		body []byte
		bump bool
	}{
		{offer, true},  // first description: version 1
		{offer, false}, // same again (a session refresh): same version
		{hold, true},   // hold: changed
		{hold, false},
		{offer, true}, // resume: changed back, still a new version
	}
	var version uint64
	for i, s := range steps {
		out, err := o.Apply(s.body, addr)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		f := originLine(t, out)
		want := []string{"twinpbx", strconv.FormatUint(o.SessionID, 10), "", "IN", "IP4", "192.0.2.10"}
		got := slices.Clone(f)
		got[2] = ""
		if !slices.Equal(got, want) {
			t.Errorf("step %d: o=%v, want %v", i, f, want)
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			t.Fatalf("step %d: version %q", i, f[2])
		}
		switch {
		case s.bump && v != version+1:
			t.Errorf("step %d: version %d, want %d", i, v, version+1)
		case !s.bump && v != version:
			t.Errorf("step %d: version %d, want unchanged %d", i, v, version)
		}
		version = v
	}
}

// TestOriginCarriesOn checks that a copy of the state (as replicated to
// the twin) continues the version sequence.
func TestOriginCarriesOn(t *testing.T) {
	o, err := NewOrigin("")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("2001:db8::5")
	offer := fixture(t, "sipp-default.sdp")
	if _, err := o.Apply(offer, addr); err != nil {
		t.Fatal(err)
	}
	twin := o
	out, err := twin.Apply(offer, addr)
	if err != nil {
		t.Fatal(err)
	}
	f := originLine(t, out)
	if f[0] != "-" || f[2] != "1" || f[4] != "IP6" {
		t.Errorf("o=%v", f)
	}
	if _, err := twin.Apply([]byte("garbage"), addr); err == nil {
		t.Error("garbage accepted")
	}
	if twin.Version != 1 {
		t.Errorf("failed Apply changed the version to %d", twin.Version)
	}
	if _, err := twin.Apply(offer, netip.Addr{}); err == nil {
		t.Error("invalid address accepted")
	}
}

func FuzzOriginApply(f *testing.F) {
	f.Add(fixture(f, "linphone-offer.sdp"))
	f.Add(fixture(f, "hold-c0.sdp"))
	f.Add([]byte("v=0\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		o := Origin{Username: "twinpbx", SessionID: 42}
		out, err := o.Apply(body, netip.MustParseAddr("192.0.2.10"))
		if err != nil {
			return
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("output does not re-parse: %v\n%q", err, out)
		}
		// The same description again is a refresh: no new version.
		again, err := o.Apply(body, netip.MustParseAddr("192.0.2.10"))
		if err != nil || o.Version != 1 || string(again) != string(out) {
			t.Fatalf("re-applying: version %d, %v\n%q\n%q", o.Version, err, out, again)
		}
	})
}
