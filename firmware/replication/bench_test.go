package replication

import (
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// BenchmarkRegisterWrite measures REGISTER-sized binding writes on the
// active, each durable (fsync'd) before it returns: alone, and with a
// standby over loopback TLS acknowledging each before the commit.
func BenchmarkRegisterWrite(b *testing.B) {
	b.Run("alone", func(b *testing.B) {
		st := openStore(b, b.TempDir(), store.Options{})
		runWrites(b, st)
	})
	b.Run("synchronous standby", func(b *testing.B) {
		ca := newPKI(b, "pair")
		p := newPair(b, pairOpts{ackTimeout: 5 * time.Second, serverTLS: serverTLS(b, ca, ca, "a"), noReceiver: true})
		p.startReceiver(b, clientTLS(b, ca, ca, "b", "a"))
		p.waitSynced(b)
		runWrites(b, p.active)
		b.StopTimer()
		if n := p.sndEv.count(OutOfSync); n != 0 {
			b.Fatalf("%d writes were not acknowledged in time", n)
		}
	})
}

func runWrites(b *testing.B, st *store.Store) {
	i := 0
	start := time.Now()
	for b.Loop() {
		if err := st.SaveBinding(binding(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "writes/s")
}
