package build

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func TestParseSourceDateEpoch(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false},
		{"1700000000", 1700000000, false},
		{"253402300799", 253402300799, false},
		{"0001700000000", 0, true}, // longer than any valid value
		{"253402300800", 0, true},  // year 10000
		{"999999999999", 0, true},
		{"", 0, true},
		{"-1", 0, true},
		{"+5", 0, true},
		{" 5", 0, true},
		{"5\n", 0, true},
		{"1.5", 0, true},
		{"1e9", 0, true},
		{"now", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSourceDateEpoch(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
					t.Fatalf("ParseSourceDateEpoch(%q) = %v, %v; want an error naming SOURCE_DATE_EPOCH", tt.in, got, err)
				}
				return
			}
			if err != nil || got.Unix() != tt.want || got.Location() != time.UTC {
				t.Fatalf("ParseSourceDateEpoch(%q) = %v, %v; want %d UTC", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseSourceDateEpoch(f *testing.F) {
	for _, s := range []string{"0", "1700000000", "253402300799", "253402300800", "-1", "+1", "", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSourceDateEpoch(s)
		if err != nil {
			return
		}
		if n := got.Unix(); n < 0 || n > maxEpoch {
			t.Fatalf("ParseSourceDateEpoch(%q) = %v, out of range", s, got)
		}
		// Accepted: digits that say that number of seconds.
		if strings.TrimLeft(s, "0") != strings.TrimLeft(strconv.FormatInt(got.Unix(), 10), "0") {
			t.Fatalf("ParseSourceDateEpoch(%q) = %d", s, got.Unix())
		}
	})
}

func TestSigningTime(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), BzImage)
	if err := os.WriteFile(kernel, []byte("a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg := time.Date(2025, 10, 1, 12, 30, 45, 0, time.UTC)
	if err := os.Chtimes(kernel, pkg, pkg.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, epoch, kernel string
		want                time.Time
		wantErr             string
	}{
		{"SOURCE_DATE_EPOCH", "1700000000", kernel, time.Unix(1700000000, 0), ""},
		{"SOURCE_DATE_EPOCH zero", "0", kernel, time.Unix(0, 0), ""},
		{"SOURCE_DATE_EPOCH wins over a missing kernel", "1700000000", "/nonexistent", time.Unix(1700000000, 0), ""},
		{"the kernel's date", "", kernel, pkg, ""},
		{"bad SOURCE_DATE_EPOCH", "yesterday", kernel, time.Time{}, "SOURCE_DATE_EPOCH"},
		{"no kernel", "", filepath.Join(t.TempDir(), BzImage), time.Time{}, "kernel's date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.epoch)
			got, err := SigningTime(tt.kernel)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("SigningTime = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestSignedTime: the signing time is moved into the certificate's
// validity, whole seconds, and a time osslsigncode cannot write (before
// 1970, after 2049) is an error, never a time outside the validity that
// Linux's kexec would refuse.
func TestSignedTime(t *testing.T) {
	utc := func(y int, m time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, m, d, h, mi, s, ns, time.UTC)
	}
	tenYears := &x509.Certificate{NotBefore: utc(2024, 3, 1, 0, 0, 0, 0), NotAfter: utc(2034, 3, 1, 0, 0, 0, 0)}
	wide := &x509.Certificate{NotBefore: utc(1960, 1, 1, 0, 0, 0, 0), NotAfter: utc(2100, 1, 1, 0, 0, 0, 0)}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		at      time.Time
		want    time.Time
		wantErr bool
	}{
		{"zero: the validity's start", tenYears, time.Time{}, tenYears.NotBefore, false},
		{"before the validity", tenYears, time.Unix(0, 0), tenYears.NotBefore, false},
		{"at its start", tenYears, tenYears.NotBefore, tenYears.NotBefore, false},
		{"within", tenYears, utc(2025, 10, 1, 12, 30, 45, 0), utc(2025, 10, 1, 12, 30, 45, 0), false},
		{"within, a fraction of a second dropped", tenYears, utc(2025, 10, 1, 12, 30, 45, 999999999), utc(2025, 10, 1, 12, 30, 45, 0), false},
		{"in another zone", tenYears, utc(2025, 10, 1, 12, 30, 45, 0).In(time.FixedZone("CEST", 7200)), utc(2025, 10, 1, 12, 30, 45, 0), false},
		{"at its end", tenYears, tenYears.NotAfter, tenYears.NotAfter, false},
		{"after the validity", tenYears, utc(2040, 1, 1, 0, 0, 0, 0), tenYears.NotAfter, false},
		{"the last second of 2049", wide, utc(2049, 12, 31, 23, 59, 59, 500), utc(2049, 12, 31, 23, 59, 59, 0), false},
		{"2050: no UTCTime for it", wide, utc(2050, 1, 1, 0, 0, 0, 0), time.Time{}, true},
		{"zero with a validity from 1960", wide, time.Time{}, time.Time{}, true},
		{"before 1970", wide, utc(1969, 12, 31, 23, 59, 59, 0), time.Time{}, true},
		{"a validity that ends before it starts", &x509.Certificate{NotBefore: tenYears.NotAfter, NotAfter: tenYears.NotBefore}, utc(2025, 10, 1, 12, 30, 45, 0), time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signedTime(tt.at, tt.cert)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("signedTime(%v) = %v, want an error", tt.at, got)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Fatalf("signedTime(%v) = %v, %v; want %v UTC", tt.at, got, err, tt.want)
			}
			if got.Before(tt.cert.NotBefore) || got.After(tt.cert.NotAfter) || got.Nanosecond() != 0 {
				t.Fatalf("signedTime(%v) = %v: outside %v to %v, or not whole seconds", tt.at, got, tt.cert.NotBefore, tt.cert.NotAfter)
			}
		})
	}
}

// testECDSAKey writes an ECDSA key and its certificate to dir: a key
// SignStage refuses.
func testECDSAKey(t testing.TB, dir string) SecureBoot {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return writeTestKey(t, dir, "ecdsa", k, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ecdsa"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)})
}

func FuzzParseSigningCert(f *testing.F) {
	dir := f.TempDir()
	for _, sb := range []SecureBoot{testSecureBootKey(f, dir, "rsa"), testECDSAKey(f, dir)} {
		b, err := os.ReadFile(sb.Cert)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), b...))
		f.Add(bytes.Replace(b, []byte("CERTIFICATE"), []byte("X509 CRL"), 2))
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseSigningCert(b)
		if err != nil {
			return
		}
		if got == nil || got.PublicKeyAlgorithm != x509.RSA {
			t.Fatalf("accepted %q as %+v", b, got)
		}
		// Accepted: a PEM certificate for an RSA key is in there.
		rest := b
		for {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				t.Fatalf("accepted without a certificate: %q", b)
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil || c.PublicKeyAlgorithm != x509.RSA {
				t.Fatalf("accepted %q: %v", b, err)
			}
			return
		}
	})
}

// signingTimeOf reads the signing time in the signature of the PE image
// at path (sbattach detaches it, openssl prints it).
func signingTimeOf(t *testing.T, path string) time.Time {
	t.Helper()
	sig := filepath.Join(t.TempDir(), "sig.p7")
	if out, err := exec.Command("sbattach", "--detach", sig, path).CombinedOutput(); err != nil {
		t.Fatalf("sbattach --detach: %v\n%s", err, out)
	}
	out, err := exec.Command("openssl", "pkcs7", "-inform", "DER", "-in", sig, "-print", "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs7: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "signingTime")
	if !ok {
		t.Fatalf("no signing time in the signature of %s:\n%s", path, out)
	}
	for _, line := range strings.Split(after, "\n") {
		for _, tag := range []string{"UTCTIME:", "GENERALIZEDTIME:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), tag); ok {
				got, err := time.Parse("Jan _2 15:04:05 2006 MST", v)
				if err != nil {
					t.Fatalf("signing time %q: %v", v, err)
				}
				return got
			}
		}
	}
	t.Fatalf("no signing time value in the signature of %s:\n%s", path, out)
	return time.Time{}
}

// nextSecond waits until the wall clock's second has turned, so that two
// signings around it would differ if the clock went into the signature.
func nextSecond(t *testing.T) {
	t.Helper()
	now := time.Now().Unix()
	waitfor.Cond(t, 30*time.Second, "the clock's next second", func() bool { return time.Now().Unix() > now })
}

// TestSignStageReproducible: the same image signed twice with the same
// key and time, the clock's second turned between, gives the same bytes,
// which verify and carry the time asked for; another time gives other
// bytes (the time is in the signature).
func TestSignStageReproducible(t *testing.T) {
	requireSigningTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	sb := testSecureBootKey(t, dir, "db key")
	stub := readFile(t, EFIStub)
	sign := func(sb SecureBoot) []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), UKI)
		if err := os.WriteFile(path, stub, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := SignStage(ctx, path, sb); err != nil {
			t.Fatal(err)
		}
		if err := VerifyStage(ctx, path, sb.Cert); err != nil {
			t.Fatal(err)
		}
		return readFile(t, path)
	}
	for _, when := range []time.Time{{}, time.Unix(0, 0), time.Date(2025, 10, 1, 12, 30, 45, 0, time.UTC), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)} {
		sb := sb
		sb.Time = when
		a := sign(sb)
		nextSecond(t)
		b := sign(sb)
		if !bytes.Equal(a, b) {
			t.Errorf("signed at %v twice a second apart: the images differ", when)
		}
		path := filepath.Join(t.TempDir(), UKI)
		if err := os.WriteFile(path, a, 0o644); err != nil {
			t.Fatal(err)
		}
		want := when
		if want.IsZero() {
			want = time.Unix(0, 0)
		}
		if got := signingTimeOf(t, path); !got.Equal(want) {
			t.Errorf("signing time in the signature %v, want %v", got, want)
		}
	}
	sb.Time = time.Unix(1700000000, 0)
	a := sign(sb)
	sb.Time = time.Unix(1700000001, 0)
	if b := sign(sb); bytes.Equal(a, b) {
		t.Error("signed at two times: the same bytes")
	}

	// A time outside the certificate's validity is moved into it (Linux's
	// kexec refuses a signature made outside it).
	from, to := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2034, 3, 1, 0, 0, 0, 0, time.UTC)
	late := testSecureBootKeyValid(t, dir, "made in 2024", from, to)
	for _, tt := range []struct{ at, want time.Time }{
		{time.Time{}, from},
		{time.Unix(0, 0), from},
		{time.Date(2025, 10, 1, 12, 30, 45, 0, time.UTC), time.Date(2025, 10, 1, 12, 30, 45, 0, time.UTC)},
		{time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), to},
	} {
		late.Time = tt.at
		if got, err := late.SignedTime(); err != nil || !got.Equal(tt.want) {
			t.Errorf("SignedTime of %v: %v, %v; want %v", tt.at, got, err, tt.want)
		}
		path := filepath.Join(t.TempDir(), UKI)
		if err := os.WriteFile(path, sign(late), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := signingTimeOf(t, path); !got.Equal(tt.want) {
			t.Errorf("asked to sign at %v with a certificate of %v to %v: signed at %v, want %v", tt.at, from, to, got, tt.want)
		}
	}
}

// TestBuildDiskSecureBootReproducible: two signed builds of the same
// image folder with the same key, into two folders, the clock's second
// turned between, give the same signed stage, signed kernel, bundle and
// disk, signed at the kernel's date, or at SOURCE_DATE_EPOCH when set.
func TestBuildDiskSecureBootReproducible(t *testing.T) {
	requireSigningTools(t)
	ctx := context.Background()
	sb := testSecureBootKey(t, t.TempDir(), "db key")
	img := t.TempDir()
	kernel := filepath.Join(img, BzImage)
	if err := os.WriteFile(kernel, readFile(t, EFIStub), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg := time.Date(2025, 10, 1, 12, 30, 45, 0, time.UTC)
	if err := os.Chtimes(kernel, pkg, pkg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, Initramfs), []byte("an initramfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func() (string, DiskResult) {
		t.Helper()
		out := t.TempDir()
		res, err := BuildDisk(ctx, DiskOptions{Image: img, Out: out, Version: "v1", Key: testUpdateKey(t), SlotSize: 1 << 20, DataSize: 8 << 20,
			StageCmdline: "console=ttyS0", SecureBoot: &sb})
		if err != nil {
			t.Fatal(err)
		}
		return out, res
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	out1, res1 := build()
	nextSecond(t)
	out2, res2 := build()
	if !res1.SigningTime.Equal(pkg) || !res2.SigningTime.Equal(pkg) {
		t.Errorf("signed at %v and %v, want the kernel's date %v", res1.SigningTime, res2.SigningTime, pkg)
	}
	if !sb.Time.IsZero() {
		t.Error("BuildDisk changed the caller's SecureBoot")
	}
	if res1.Stage.SHA256 != res2.Stage.SHA256 {
		t.Errorf("signed stages differ: %s / %s", res1.Stage.SHA256, res2.Stage.SHA256)
	}
	for _, name := range []string{SignedBzImage, Bundle, Disk} {
		if !bytes.Equal(readFile(t, filepath.Join(out1, name)), readFile(t, filepath.Join(out2, name))) {
			t.Errorf("two signed builds: %s differs", name)
		}
	}
	if got := signingTimeOf(t, filepath.Join(out1, SignedBzImage)); !got.Equal(pkg) {
		t.Errorf("the kernel's signature says %v, want %v", got, pkg)
	}
	if got := signingTimeOf(t, espStage(t, filepath.Join(out1, Disk))); !got.Equal(pkg) {
		t.Errorf("the stage's signature says %v, want %v", got, pkg)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	out3, res3 := build()
	if want := time.Unix(1700000000, 0); !res3.SigningTime.Equal(want) || !signingTimeOf(t, filepath.Join(out3, SignedBzImage)).Equal(want) {
		t.Errorf("with SOURCE_DATE_EPOCH signed at %v, want %v", res3.SigningTime, want)
	}
	if res3.Bundle.SHA256 == res1.Bundle.SHA256 {
		t.Error("signed at another time, the bundle is the same")
	}

	// A key made after the kernel package: signed at the start of its
	// certificate, where kexec accepts it.
	t.Setenv("SOURCE_DATE_EPOCH", "")
	newKey := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sbNew := testSecureBootKeyValid(t, t.TempDir(), "new key", newKey, newKey.AddDate(10, 0, 0))
	res4, err := BuildDisk(ctx, DiskOptions{Image: img, Out: t.TempDir(), Version: "v1", Key: testUpdateKey(t), SlotSize: 1 << 20, DataSize: 8 << 20,
		StageCmdline: "console=ttyS0", SecureBoot: &sbNew})
	if err != nil || !res4.SigningTime.Equal(newKey) {
		t.Errorf("with a key newer than the kernel: signed at %v, %v; want %v", res4.SigningTime, err, newKey)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "soon")
	if _, err := BuildDisk(ctx, DiskOptions{Image: img, Out: t.TempDir(), Version: "v1", Key: testUpdateKey(t), SlotSize: 1 << 20, DataSize: 8 << 20,
		StageCmdline: "console=ttyS0", SecureBoot: &sb}); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("a bad SOURCE_DATE_EPOCH: %v", err)
	}
}
