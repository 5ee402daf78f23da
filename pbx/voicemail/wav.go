package voicemail

import (
	"encoding/binary"
	"fmt"
	"io"
)

// WriteWAV writes audio (8 kHz mono G.711 in codec c) as a WAV file with
// the matching format tag (6 A-law, 7 μ-law), which common players read.
func WriteWAV(w io.Writer, c Codec, audio []byte) error {
	format := uint16(7)
	if c == PCMA {
		format = 6
	}
	n := uint32(len(audio))
	h := make([]byte, 0, 58)
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, 50+n+n%2)
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 18)
	h = binary.LittleEndian.AppendUint16(h, format)
	h = binary.LittleEndian.AppendUint16(h, 1)    // mono
	h = binary.LittleEndian.AppendUint32(h, 8000) // samples per second
	h = binary.LittleEndian.AppendUint32(h, 8000) // bytes per second
	h = binary.LittleEndian.AppendUint16(h, 1)    // block align
	h = binary.LittleEndian.AppendUint16(h, 8)    // bits per sample
	h = binary.LittleEndian.AppendUint16(h, 0)    // no extension
	h = append(h, "fact"...)
	h = binary.LittleEndian.AppendUint32(h, 4)
	h = binary.LittleEndian.AppendUint32(h, n)
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, n)
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("writing WAV header: %w", err)
	}
	if _, err := w.Write(audio); err != nil {
		return fmt.Errorf("writing WAV audio: %w", err)
	}
	if n%2 == 1 {
		if _, err := w.Write([]byte{0}); err != nil {
			return fmt.Errorf("writing WAV padding: %w", err)
		}
	}
	return nil
}
