package site

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// BenchmarkTableLookup looks callees up in a table of 10,000 phones on
// three boxes, as every call to another box's phone does.
func BenchmarkTableLookup(b *testing.B) {
	tb := NewTable()
	now := time.Now()
	for box := range 3 {
		var put []location.Binding
		for i := range 10000 / 3 {
			aor := strconv.Itoa(10000 + box*10000/3 + i)
			put = append(put, location.Binding{AOR: aor, Contact: "sip:" + aor + "@10.1.0.1:5060", Source: "udp:10.1.0.1:5060", Expires: now.Add(time.Hour), Updated: now})
			if len(put) == maxPerCommand {
				tb.apply(command{Op: opSync, Owner: fmt.Sprintf("box%d", box), Put: put})
				put = nil
			}
		}
		tb.apply(command{Op: opSync, Owner: fmt.Sprintf("box%d", box), Put: put})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(tb.Lookup(strconv.Itoa(10000+i%9999), "box0", now)) > 1 {
			b.Fatal("more than one binding")
		}
		i++
	}
}

// BenchmarkSiteSync registers b.N phones on box 3 of an in-process site
// at once and waits until box 1's table holds them all: the time per
// registration for a burst to reach the other boxes.
func BenchmarkSiteSync(b *testing.B) {
	sites := startBenchSites(b)
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		aor := strconv.Itoa(100000 + i)
		sites[2].Published(location.Binding{AOR: aor, Contact: "sip:" + aor + "@10.1.0.1:5060", Source: "udp:10.1.0.1:5060", Expires: now.Add(time.Hour), Updated: now})
	}
	deadline := time.Now().Add(5 * time.Minute)
	for sites[0].Table().Len() < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("box 1 holds %d of %d", sites[0].Table().Len(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
}
