// Package g711 converts between 16-bit linear samples and the two G.711
// companding laws: A-law, which ISDN B channels in Europe carry, and µ-law,
// which a SIP phone may offer instead (PCMU).
package g711

import "math/bits"

// ALawSilence and ULawSilence are the codes of a zero sample.
const (
	ALawSilence = 0xd5
	ULawSilence = 0xff
)

// EncodeALaw compresses one sample to A-law.
func EncodeALaw(s int16) byte {
	x := int(s) >> 3 // 13 bits
	sign := byte(0x80)
	if x < 0 {
		sign, x = 0, -x-1
	}
	var code byte
	if x < 32 {
		code = byte(x >> 1)
	} else {
		seg := bits.Len(uint(min(x, 0xfff))) - 5
		code = byte(seg<<4) | byte(x>>seg)&0x0f
	}
	return (sign | code) ^ 0x55
}

// DecodeALaw expands an A-law code to the middle of its interval.
func DecodeALaw(c byte) int16 {
	c ^= 0x55
	seg, mant := int(c>>4)&7, int(c&0x0f)
	x := mant<<1 | 1
	if seg > 0 {
		x = (mant<<1 | 0x21) << (seg - 1)
	}
	if c&0x80 == 0 {
		x = -x
	}
	return int16(x << 3)
}

// EncodeULaw compresses one sample to µ-law.
func EncodeULaw(s int16) byte {
	x := int(s) >> 2 // 14 bits
	sign := byte(0)
	if x < 0 {
		sign, x = 0x80, -x
	}
	x = min(x+33, 0x1fff)
	seg := bits.Len(uint(x)) - 6
	return ^(sign | byte(seg<<4) | byte(x>>(seg+1))&0x0f)
}

// DecodeULaw expands a µ-law code.
func DecodeULaw(c byte) int16 {
	c = ^c
	seg, mant := int(c>>4)&7, int(c&0x0f)
	t := (mant<<3 + 0x84) << seg
	if c&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

var alawToULaw, ulawToALaw [256]byte

func init() {
	for i := range 256 {
		alawToULaw[i] = EncodeULaw(DecodeALaw(byte(i)))
		ulawToALaw[i] = EncodeALaw(DecodeULaw(byte(i)))
	}
}

// ALawToULaw converts A-law codes to µ-law in place of dst (which must be
// as long as src) and returns dst.
func ALawToULaw(dst, src []byte) []byte {
	for i, c := range src {
		dst[i] = alawToULaw[c]
	}
	return dst[:len(src)]
}

// ULawToALaw converts µ-law codes to A-law.
func ULawToALaw(dst, src []byte) []byte {
	for i, c := range src {
		dst[i] = ulawToALaw[c]
	}
	return dst[:len(src)]
}
