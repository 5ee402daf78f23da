package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start: what a write
// costs the box, which fsync latency (the ns/op) does not show.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkAppendCDR measures one durable (fsync'd) write with its change
// log entry: the floor under every registration and call record.
func BenchmarkAppendCDR(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	cpu := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		if err := s.AppendCDR(testCDR(fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkChangesSince measures reading a batch of 1000 changes for the twin.
func BenchmarkChangesSince(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *Tx) error {
		for i := range 1000 {
			if err := tx.Put("raw", fmt.Sprint(i), make([]byte, 200)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if cs, err := s.ChangesSince(0, 1000); err != nil || len(cs) != 1000 {
			b.Fatal(len(cs), err)
		}
	}
}

// BenchmarkSaveBindingParallel measures durable binding writes from many
// goroutines at once, as the registrar does under a burst of REGISTERs:
// the cost that group commit spreads over one fsync per batch.
func BenchmarkSaveBindingParallel(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	cpu := cpuTime(b)
	defer reportCPU(b, cpu)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			now := time.Now()
			bind := location.Binding{AOR: fmt.Sprint(100 + i%500), Contact: fmt.Sprintf("sip:%d@192.0.2.1:5060", i%500),
				Source: "udp:192.0.2.1:5060", CallID: "bench", CSeq: uint32(i), Expires: now.Add(time.Hour), Updated: now}
			if err := s.SaveBinding(bind); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSaveBindingPaced measures binding writes arriving at a steady
// pace from independent goroutines, as REGISTERs do at 500/s and 1000/s:
// too far apart to meet during a commit, close enough for the group delay
// to gather them; without waiting (nowait) and with the default delay.
func BenchmarkSaveBindingPaced(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every time.Duration
		delay time.Duration
	}{
		{"500/s-nowait", 2 * time.Millisecond, -1}, {"500/s-groupdelay", 2 * time.Millisecond, 0},
		{"1000/s-nowait", time.Millisecond, -1}, {"1000/s-groupdelay", time.Millisecond, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{GroupDelay: bc.delay})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tick := time.NewTicker(bc.every)
			defer tick.Stop()
			var wg sync.WaitGroup
			cpu := cpuTime(b)
			for i := 0; b.Loop(); i++ {
				<-tick.C
				wg.Add(1)
				go func() {
					defer wg.Done()
					now := time.Now()
					bind := location.Binding{AOR: fmt.Sprint(100 + i%500), Contact: fmt.Sprintf("sip:%d@192.0.2.1:5060", i%500),
						Source: "udp:192.0.2.1:5060", CallID: "bench", CSeq: uint32(i), Expires: now.Add(time.Hour), Updated: now}
					if err := s.SaveBinding(bind); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			reportCPU(b, cpu)
		})
	}
}
