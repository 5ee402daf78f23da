package pairing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A pairing code is 25 symbols of Crockford's base32 alphabet shown in
// five groups of five, e.g. "7K3QD-X9M2P-4RTVW-0HJ8N-C5EFA": 24 random
// symbols (120 bits) and a Luhn mod 32 check symbol, which catches any one
// mistyped symbol and most swaps of neighbours before the boxes try to pair.
const (
	codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	codeData     = 24
	codeLen      = codeData + 1
	codeGroup    = 5
)

// NewPairingKey makes a new random pairing code in its canonical form.
// r is the source of randomness; nil means crypto/rand.
func NewPairingKey(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var raw [codeData * 5 / 8]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", fmt.Errorf("making a pairing code: reading random bytes: %w", err)
	}
	sym := make([]byte, 0, codeLen)
	var acc uint32
	bits := 0
	for _, b := range raw {
		acc = acc<<8 | uint32(b)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sym = append(sym, byte(acc>>bits)&31)
		}
	}
	sym = append(sym, checkSymbol(sym))
	return format(sym), nil
}

// Normalize checks a pairing code as a person typed it and returns its
// canonical form. It ignores case, spaces, dashes, underscores and dots,
// reads O as 0 and I or L as 1, and refuses other letters outside the
// alphabet (such as U), a wrong length, or a code whose check symbol does
// not match, saying which.
func Normalize(code string) (string, error) {
	sym := make([]byte, 0, codeLen)
	pos := 0
	for _, r := range code {
		pos++
		switch r {
		case ' ', '\t', '-', '_', '.':
			continue
		case 'o', 'O':
			r = '0'
		case 'i', 'I', 'l', 'L':
			r = '1'
		}
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		v := strings.IndexRune(codeAlphabet, r)
		if v < 0 {
			return "", fmt.Errorf("pairing code: %q at position %d is not a pairing code character (0-9 and A-Z without I, L, O, U)", r, pos)
		}
		if len(sym) == codeLen {
			return "", fmt.Errorf("pairing code: too long, a pairing code has %d characters", codeLen)
		}
		sym = append(sym, byte(v))
	}
	if len(sym) != codeLen {
		return "", fmt.Errorf("pairing code: %d characters, a pairing code has %d", len(sym), codeLen)
	}
	if checkSymbol(sym[:codeData]) != sym[codeData] {
		return "", errors.New("pairing code: it has a typo (its check character does not match); compare it with the twin's console")
	}
	return format(sym), nil
}

// checkSymbol is the Luhn mod 32 check symbol of data (symbol values).
func checkSymbol(data []byte) byte {
	const n = 32
	factor, sum := 2, 0
	for i := len(data) - 1; i >= 0; i-- {
		a := factor * int(data[i])
		sum += a/n + a%n
		factor = 3 - factor
	}
	return byte((n - sum%n) % n)
}

func format(sym []byte) string {
	var b strings.Builder
	for i, v := range sym {
		if i > 0 && i%codeGroup == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(codeAlphabet[v])
	}
	return b.String()
}
