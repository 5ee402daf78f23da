package rawudp

import (
	"net"
	"strconv"
	"testing"
)

// TestZoneCache: interface names and indexes of link-local zones are
// answered from the cache without allocating once known, and names or
// indexes no interface has are answered as the net package would.
func TestZoneCache(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("SKIPPING: no loopback interface named lo here: %v", err)
	}
	tests := []struct {
		name  string
		index uint32
		want  string // zoneName(index)
		wantI uint32 // index(name)
	}{
		{"lo", uint32(lo.Index), "lo", uint32(lo.Index)},
		{"no-such-if0", 1 << 30, strconv.Itoa(1 << 30), 0},
	}
	for _, tc := range tests {
		if got := zoneName(tc.index); got != tc.want {
			t.Errorf("zoneName(%d) = %q, want %q", tc.index, got, tc.want)
		}
		if got := zones.index(tc.name); got != tc.wantI {
			t.Errorf("index(%q) = %d, want %d", tc.name, got, tc.wantI)
		}
	}
	idx := uint32(lo.Index)
	if n := testing.AllocsPerRun(100, func() {
		_ = zoneName(idx)
		_ = zones.index("lo")
	}); n != 0 {
		t.Errorf("a known zone costs %v allocations, want none", n)
	}
}
