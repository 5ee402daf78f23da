// Package update is the A/B firmware update of a box: the signed update
// bundle (a kernel and an initramfs with a manifest signed with ed25519),
// the boot state record that says which slot boots next and whether it
// is on trial, the pure state machine over it (trial, commit, fallback),
// the GPT layout of the box's disk, and writing a bundle into the
// inactive slot. Booting a slot (kexec) is done by init, which reads the
// same record; see docs/IMAGE.md.
package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// A bundle is one file:
//
//	magic "TWPBXUB1" (8 bytes)
//	manifest length, uint32 big-endian
//	ed25519 signature over signContext + manifest (64 bytes)
//	manifest (JSON)
//	the parts, one after the other, in the manifest's order
//
// The manifest names each part with its size and sha256, so a verified
// signature covers every byte that follows.
const (
	// BundleMagic opens every bundle (init tells a bundle written raw
	// onto a partition from a blank one by it).
	BundleMagic = "TWPBXUB1"
	headerSize  = 8 + 4 + ed25519.SignatureSize
	signContext = "twinpbx update bundle v1\n"
	// MaxManifest bounds the manifest a reader accepts.
	MaxManifest = 64 << 10
	// MaxPart bounds one part (a kernel or an initramfs).
	MaxPart = 1 << 30
)

// Part names a bundle must hold.
const (
	PartKernel    = "kernel"    // a bzImage (kexec_file_load takes only that on x86)
	PartInitramfs = "initramfs" // the compressed cpio
)

// FormatVersion is the manifest's format field this package writes and reads.
const FormatVersion = 1

// Manifest describes a bundle.
type Manifest struct {
	Format  int    `json:"format"`
	Version string `json:"version"`
	// Parts are in the order their bytes follow the manifest.
	Parts []PartInfo `json:"parts"`
}

// PartInfo is one part of a bundle.
type PartInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Part is a part's contents for WriteBundle.
type Part struct {
	Name string
	Data []byte
}

// Errors a reader tells apart.
var (
	ErrNotBundle    = errors.New("not a twinpbx update bundle")
	ErrBadSignature = errors.New("bundle signature does not verify with this box's update key")
	ErrCorrupt      = errors.New("bundle part does not match its manifest")
)

// WriteBundle writes a bundle of version with parts, signed with key.
func WriteBundle(w io.Writer, key ed25519.PrivateKey, version string, parts []Part) error {
	m := Manifest{Format: FormatVersion, Version: version}
	for _, p := range parts {
		sum := sha256.Sum256(p.Data)
		m.Parts = append(m.Parts, PartInfo{Name: p.Name, Size: int64(len(p.Data)), SHA256: hex.EncodeToString(sum[:])})
	}
	if err := m.Check(); err != nil {
		return fmt.Errorf("writing a bundle: %w", err)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("writing a bundle: %w", err)
	}
	hdr := make([]byte, 0, headerSize)
	hdr = append(hdr, BundleMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(mb)))
	hdr = append(hdr, ed25519.Sign(key, signed(mb))...)
	if _, err := w.Write(append(hdr, mb...)); err != nil {
		return fmt.Errorf("writing a bundle: %w", err)
	}
	for _, p := range parts {
		if _, err := w.Write(p.Data); err != nil {
			return fmt.Errorf("writing a bundle: %w", err)
		}
	}
	return nil
}

func signed(manifest []byte) []byte {
	return append([]byte(signContext), manifest...)
}

// Check reports what is wrong with a manifest: the format, the version
// (1 to 64 printable ASCII characters without spaces), the parts (a
// kernel and an initramfs, no duplicates, sane sizes, sha256 in hex).
func (m *Manifest) Check() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest format %d, want %d", m.Format, FormatVersion)
	}
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	var names []string
	for _, p := range m.Parts {
		if !token(p.Name, 32) {
			return fmt.Errorf("manifest part name %q", p.Name)
		}
		if slices.Contains(names, p.Name) {
			return fmt.Errorf("manifest names part %q twice", p.Name)
		}
		names = append(names, p.Name)
		if p.Size < 0 || p.Size > MaxPart {
			return fmt.Errorf("manifest part %s: size %d out of range", p.Name, p.Size)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("manifest part %s: sha256 %q is not 64 hex digits", p.Name, p.SHA256)
		}
	}
	for _, want := range []string{PartKernel, PartInitramfs} {
		if !slices.Contains(names, want) {
			return fmt.Errorf("manifest has no %s part", want)
		}
	}
	return nil
}

// token reports whether s is 1 to max printable ASCII characters
// without spaces, as versions and part names must be.
func token(s string, max int) bool {
	return s != "" && len(s) <= max && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
}

func checkVersion(v string) error {
	if !token(v, 64) {
		return fmt.Errorf("bundle version %q: want 1 to 64 printable characters without spaces", v)
	}
	return nil
}

// Bundle is an opened bundle whose manifest signature has been verified.
// Its parts' hashes are checked by Verify or while extracting them.
type Bundle struct {
	Manifest Manifest
	// Size is the bundle's length: header, manifest and parts. A slot
	// partition holds a bundle followed by whatever was there before.
	Size    int64
	r       io.ReaderAt
	offsets []int64
}

// Open reads the header and the manifest of the bundle at the start of r
// (size bytes long) and checks the manifest's signature with pub and its
// contents. It does not read the parts: see Verify and Extract.
func Open(r io.ReaderAt, size int64, pub ed25519.PublicKey) (*Bundle, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("opening a bundle: no valid update key")
	}
	if size < headerSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotBundle, size)
	}
	hdr := make([]byte, headerSize)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("reading the bundle header: %w", err)
	}
	if string(hdr[:8]) != BundleMagic {
		return nil, ErrNotBundle
	}
	n := int64(binary.BigEndian.Uint32(hdr[8:12]))
	if n == 0 || n > MaxManifest || headerSize+n > size {
		return nil, fmt.Errorf("%w: manifest length %d", ErrNotBundle, n)
	}
	mb := make([]byte, n)
	if _, err := r.ReadAt(mb, headerSize); err != nil {
		return nil, fmt.Errorf("reading the bundle manifest: %w", err)
	}
	if !ed25519.Verify(pub, signed(mb), hdr[12:]) {
		return nil, ErrBadSignature
	}
	b := &Bundle{r: r}
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Manifest); err != nil {
		return nil, fmt.Errorf("reading the bundle manifest: %w", err)
	}
	if err := b.Manifest.Check(); err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	off := headerSize + n
	for _, p := range b.Manifest.Parts {
		b.offsets = append(b.offsets, off)
		off += p.Size
	}
	if off > size {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the manifest needs %d", ErrCorrupt, size, off)
	}
	b.Size = off
	return b, nil
}

// Extract copies the named part to w, checking its sha256; on a mismatch
// it returns ErrCorrupt and what was written to w must be thrown away.
func (b *Bundle) Extract(name string, w io.Writer) error {
	i := slices.IndexFunc(b.Manifest.Parts, func(p PartInfo) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("bundle has no part %q", name)
	}
	p := b.Manifest.Parts[i]
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), io.NewSectionReader(b.r, b.offsets[i], p.Size)); err != nil {
		return fmt.Errorf("reading bundle part %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrCorrupt, name, got, p.SHA256)
	}
	return nil
}

// Verify checks every part's sha256.
func (b *Bundle) Verify() error {
	for _, p := range b.Manifest.Parts {
		if err := b.Extract(p.Name, io.Discard); err != nil {
			return err
		}
	}
	return nil
}

// OpenVerified opens the bundle at the start of r and checks every part.
func OpenVerified(r io.ReaderAt, size int64, pub ed25519.PublicKey) (*Bundle, error) {
	b, err := Open(r, size, pub)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(); err != nil {
		return nil, err
	}
	return b, nil
}

// IsBundle reports whether b starts with a bundle's magic.
func IsBundle(b []byte) bool {
	return len(b) >= len(BundleMagic) && string(b[:len(BundleMagic)]) == BundleMagic
}
