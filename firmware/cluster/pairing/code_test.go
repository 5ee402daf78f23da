package pairing

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewPairingKey(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		code, err := NewPairingKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(code) != 29 || strings.Count(code, "-") != 4 {
			t.Fatalf("code %q is not five groups of five", code)
		}
		n, err := Normalize(code)
		if err != nil || n != code {
			t.Fatalf("Normalize(%q) = %q, %v; want the code unchanged", code, n, err)
		}
		if seen[code] {
			t.Fatalf("code %q made twice", code)
		}
		seen[code] = true
	}
	// A fixed source gives a fixed code (no hidden randomness).
	a, _ := NewPairingKey(bytes.NewReader(make([]byte, 15)))
	if a != "00000-00000-00000-00000-00000" {
		t.Errorf("all-zero randomness gave %q", a)
	}
	if _, err := NewPairingKey(bytes.NewReader(make([]byte, 3))); err == nil {
		t.Error("a short random source did not fail")
	}
}

func TestNormalize(t *testing.T) {
	// valid is a code with a correct check symbol, made from fixed bytes.
	valid, err := NewPairingKey(bytes.NewReader([]byte("pairing-test-01")))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test code %s", valid)
	flat := strings.ReplaceAll(valid, "-", "")
	// swap two different neighbouring symbols.
	swapped := []byte(flat)
	for i := 0; i+1 < len(swapped); i++ {
		if swapped[i] != swapped[i+1] {
			swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
			break
		}
	}
	// change one symbol.
	oneOff := []byte(flat)
	if oneOff[3] == 'Z' {
		oneOff[3] = 'Y'
	} else {
		oneOff[3] = 'Z'
	}
	// a code whose 0s and 1s are typed as letters.
	sym := []byte{0, 0, 1, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 1}
	zeroOne := format(append(sym, checkSymbol(sym)))
	tests := []struct {
		name, in, want, err string
	}{
		{"canonical", valid, valid, ""},
		{"lower case", strings.ToLower(valid), valid, ""},
		{"no dashes", flat, valid, ""},
		{"spaces", strings.ReplaceAll(valid, "-", " "), valid, ""},
		{"mixed separators", " " + flat[:3] + "_" + flat[3:10] + ".\t" + flat[10:] + " ", valid, ""},
		{"O, I and L", "OoIlO-" + zeroOne[6:27] + "L" + zeroOne[28:], zeroOne, ""},
		{"O read as zero", strings.ReplaceAll(zeroOne, "0", "O"), zeroOne, ""},
		{"o read as zero", strings.ReplaceAll(zeroOne, "0", "o"), zeroOne, ""},
		{"empty", "", "", "0 characters"},
		{"short", flat[:24], "", "24 characters"},
		{"long", flat + "0", "", "too long"},
		{"U", "U" + flat[1:], "", `'U' at position 1`},
		{"punctuation", flat[:5] + "!" + flat[5:], "", `'!' at position 6`},
		{"non-ASCII", "é" + flat, "", `'é' at position 1`},
		{"one symbol wrong", string(oneOff), "", "typo"},
		{"neighbours swapped", string(swapped), "", "typo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Normalize(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCheckSymbolCatchesEverySingleError(t *testing.T) {
	code, _ := NewPairingKey(bytes.NewReader([]byte("another-seed-15")))
	flat := strings.ReplaceAll(code, "-", "")
	for i := range flat {
		for _, c := range codeAlphabet {
			if byte(c) == flat[i] {
				continue
			}
			typo := flat[:i] + string(c) + flat[i+1:]
			if _, err := Normalize(typo); err == nil {
				t.Errorf("typo %q of %q passed", typo, flat)
			}
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "00000-00000-00000-00000-00000", "abcde fghij", "U", "é", "OIL"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		// A normalized code is canonical and stays so.
		again, err := Normalize(n)
		if err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q but Normalize(%q) = %q, %v", s, n, n, again, err)
		}
		if len(n) != 29 {
			t.Fatalf("canonical code %q has length %d", n, len(n))
		}
	})
}
