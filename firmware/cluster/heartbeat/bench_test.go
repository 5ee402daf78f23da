package heartbeat

import (
	"crypto/rand"
	"testing"
)

// The cost of one beat: sealing on the sender, opening on the receiver.
// At 20 beats a second on two paths this is far below a millisecond of CPU
// a second; the benchmarks keep it so.

func BenchmarkSeal(b *testing.B) {
	aead, _ := newAEAD(testKey)
	p := samplePacket()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := seal(aead, rand.Reader, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	aead, _ := newAEAD(testKey)
	p := samplePacket()
	d, _ := seal(aead, rand.Reader, &p)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := open(aead, d); err != nil {
			b.Fatal(err)
		}
	}
}
