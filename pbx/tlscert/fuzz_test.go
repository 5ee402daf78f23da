package tlscert

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// FuzzDerive: any names (as a config may hold them) give a certificate or
// an error, never a panic, and the same names in another order give the
// same certificate.
func FuzzDerive(f *testing.F) {
	for _, s := range []string{"pbx-a,192.168.1.10", "[2001:db8::1],pbx.example.com", "", ",,,", "ä.example,\x00", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		names := strings.Split(list, ",")
		a, errA := Derive(seed, names)
		rev := slices.Clone(names)
		slices.Reverse(rev)
		b, errB := Derive(seed, rev)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("order changed the outcome: %v, %v", errA, errB)
		}
		if errA == nil && !bytes.Equal(a.Cert.Certificate[0], b.Cert.Certificate[0]) {
			t.Fatal("order changed the certificate")
		}
	})
}
