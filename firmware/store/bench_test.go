package store

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// BenchmarkAppendCDR measures one durable (fsync'd) write with its change
// log entry: the floor under every registration and call record.
func BenchmarkAppendCDR(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := s.AppendCDR(testCDR(fmt.Sprint("c", i), start.Add(time.Duration(i)*time.Second))); err != nil {
			b.Fatal(err)
		}
	}
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
