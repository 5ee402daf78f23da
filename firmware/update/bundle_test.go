package update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func testKeys(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, err := LoadPrivateKey("testdata/test.key")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey("testdata/test.pub")
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

var testParts = []Part{{PartKernel, []byte("kernel bytes")}, {PartInitramfs, []byte("initramfs bytes, a little longer")}}

func testBundle(t testing.TB) []byte {
	t.Helper()
	priv, _ := testKeys(t)
	var b bytes.Buffer
	if err := WriteBundle(&b, priv, "v2", testParts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rawBundle signs any manifest text, to reach the checks behind the
// signature.
func rawBundle(priv ed25519.PrivateKey, manifest string, tail []byte) []byte {
	b := []byte(BundleMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(len(manifest)))
	b = append(b, ed25519.Sign(priv, signed([]byte(manifest)))...)
	return append(append(b, manifest...), tail...)
}

func TestBundleRoundTrip(t *testing.T) {
	_, pub := testKeys(t)
	raw := testBundle(t)
	b, err := OpenVerified(bytes.NewReader(raw), int64(len(raw)), pub)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != "v2" || b.Size != int64(len(raw)) {
		t.Fatalf("manifest %+v size %d (file %d)", b.Manifest, b.Size, len(raw))
	}
	for _, p := range testParts {
		var got bytes.Buffer
		if err := b.Extract(p.Name, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), p.Data) {
			t.Errorf("part %s = %q, want %q", p.Name, got.Bytes(), p.Data)
		}
	}
	// A slot partition holds the bundle and old bytes after it.
	slot := append(append([]byte{}, raw...), bytes.Repeat([]byte{0xee}, 4096)...)
	b, err = OpenVerified(bytes.NewReader(slot), int64(len(slot)), pub)
	if err != nil || b.Size != int64(len(raw)) {
		t.Fatalf("bundle in a slot: size %v, %v", b, err)
	}
	if err := b.Extract("nope", io.Discard); err == nil {
		t.Error("extracting a part the bundle has not: no error")
	}
}

// TestBundleTampered changes every field of a signed bundle and checks
// that it is refused, with the right error.
func TestBundleTampered(t *testing.T) {
	priv, pub := testKeys(t)
	raw := testBundle(t)
	mlen := int(binary.BigEndian.Uint32(raw[8:12]))
	mstart := headerSize
	manifest := string(raw[mstart : mstart+mlen])
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b[i] ^= 0x01; return b }
	}
	inManifest := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			m := strings.Replace(manifest, old, new, 1)
			if m == manifest {
				t.Fatalf("manifest %s has no %q", manifest, old)
			}
			// Keep the signature: the manifest no longer matches it.
			return append(append(append([]byte{}, b[:8]...), append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), b[12:headerSize]...)...), append([]byte(m), b[mstart+mlen:]...)...)
		}
	}
	tests := []struct {
		name   string
		change func([]byte) []byte
		want   error  // errors.Is, or nil with wantIn
		wantIn string // text of the error
	}{
		{"magic", flip(0), ErrNotBundle, ""},
		{"manifest length larger", func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], uint32(mlen+1)); return b }, ErrBadSignature, ""},
		{"manifest length huge", func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 1<<31); return b }, ErrNotBundle, ""},
		{"manifest length zero", func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 0); return b }, ErrNotBundle, ""},
		{"signature", flip(20), ErrBadSignature, ""},
		{"version", inManifest(`"v2"`, `"v3"`), ErrBadSignature, ""},
		{"format", inManifest(`"format":1`, `"format":2`), ErrBadSignature, ""},
		{"part name", inManifest(`"kernel"`, `"kernal"`), ErrBadSignature, ""},
		{"part size", inManifest(`"size":12`, `"size":11`), ErrBadSignature, ""},
		{"part sha256", inManifest(`"sha256":"`, `"sha256":"0`), ErrBadSignature, ""},
		{"first part byte", flip(mstart + mlen), ErrCorrupt, ""},
		{"last part byte", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrCorrupt, ""},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrCorrupt, ""},
		{"header only", func(b []byte) []byte { return b[:headerSize-1] }, ErrNotBundle, ""},
		{"empty", func([]byte) []byte { return nil }, ErrNotBundle, ""},
		{"signed, unknown field", func([]byte) []byte {
			return rawBundle(priv, `{"format":1,"version":"v","parts":[],"extra":1}`, nil)
		}, nil, "unknown field"},
		{"signed, not JSON", func([]byte) []byte { return rawBundle(priv, `{"format":`, nil) }, nil, "manifest"},
		{"signed, no initramfs", func([]byte) []byte {
			return rawBundle(priv, `{"format":1,"version":"v","parts":[{"name":"kernel","size":0,"sha256":"`+strings.Repeat("0", 64)+`"}]}`, nil)
		}, nil, "no initramfs part"},
		{"signed, bad version", func([]byte) []byte { return rawBundle(priv, `{"format":1,"version":"a b","parts":[]}`, nil) }, nil, "bundle version"},
		{"signed, format 9", func([]byte) []byte { return rawBundle(priv, `{"format":9,"version":"v","parts":[]}`, nil) }, nil, "format 9"},
		{"signed, negative size", func([]byte) []byte {
			return rawBundle(priv, `{"format":1,"version":"v","parts":[{"name":"kernel","size":-1,"sha256":"`+strings.Repeat("0", 64)+`"}]}`, nil)
		}, nil, "out of range"},
		{"signed, duplicate part", func([]byte) []byte {
			p := `{"name":"kernel","size":0,"sha256":"` + strings.Repeat("0", 64) + `"}`
			return rawBundle(priv, `{"format":1,"version":"v","parts":[`+p+`,`+p+`]}`, nil)
		}, nil, "twice"},
		{"signed, short sha256", func([]byte) []byte {
			return rawBundle(priv, `{"format":1,"version":"v","parts":[{"name":"kernel","size":0,"sha256":"00"}]}`, nil)
		}, nil, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.change(append([]byte{}, raw...))
			_, err := OpenVerified(bytes.NewReader(b), int64(len(b)), pub)
			if err == nil {
				t.Fatal("tampered bundle accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if tt.wantIn != "" && !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("error %v, want %q in it", err, tt.wantIn)
			}
		})
	}
}

func TestBundleOtherKey(t *testing.T) {
	raw := testBundle(t)
	other, err := LoadPublicKey("testdata/other.pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bytes.NewReader(raw), int64(len(raw)), other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bundle signed with another key: %v", err)
	}
	if _, err := Open(bytes.NewReader(raw), int64(len(raw)), nil); err == nil {
		t.Fatal("no key: no error")
	}
}

func TestWriteBundleRefuses(t *testing.T) {
	priv, _ := testKeys(t)
	for _, tt := range []struct {
		name    string
		version string
		parts   []Part
	}{
		{"no version", "", testParts},
		{"no kernel", "v1", testParts[1:]},
		{"duplicate", "v1", append(append([]Part{}, testParts...), testParts[0])},
	} {
		if err := WriteBundle(io.Discard, priv, tt.version, tt.parts); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestKeys(t *testing.T) {
	priv, pub := testKeys(t)
	if !pub.Equal(priv.Public()) {
		t.Fatal("test.pub is not test.key's public key")
	}
	p2, err := ParsePrivateKey(MarshalPrivateKey(priv))
	if err != nil || !p2.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	q2, err := ParsePublicKey(MarshalPublicKey(pub))
	if err != nil || !q2.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	for _, bad := range []string{"", "garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Errorf("public key %q accepted", bad)
		}
		if _, err := ParsePrivateKey([]byte(bad)); err == nil {
			t.Errorf("private key %q accepted", bad)
		}
	}
	if _, err := ParsePublicKey(MarshalPrivateKey(priv)); err == nil {
		t.Error("a private key read as a public key")
	}
}

func FuzzOpen(f *testing.F) {
	priv, pub := testKeys(f)
	f.Add(testBundle(f))
	f.Add(rawBundle(priv, `{"format":1,"version":"v","parts":[]}`, nil))
	f.Add(rawBundle(priv, `{"format":1,"version":"v","parts":[{"name":"kernel","size":3,"sha256":"`+strings.Repeat("a", 64)+`"},{"name":"initramfs","size":0,"sha256":"`+strings.Repeat("0", 64)+`"}]}`, []byte("abc")))
	f.Add([]byte(BundleMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		bd, err := Open(bytes.NewReader(b), int64(len(b)), pub)
		if err != nil {
			return
		}
		if bd.Size > int64(len(b)) {
			t.Fatalf("size %d beyond the input's %d", bd.Size, len(b))
		}
		_ = bd.Verify()
	})
}
