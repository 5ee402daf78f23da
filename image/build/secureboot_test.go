package build

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
)

func TestParseSignerList(t *testing.T) {
	debian := Signer{Subject: "/CN=Debian Secure Boot Signer 2022 - linux", Issuer: "/CN=Debian Secure Boot CA"}
	snakeoil := Signer{Subject: "/C=US/ST=Colorado/L=Fort Collins/O=SnakeOil", Issuer: "/C=US/ST=Colorado/L=Fort Collins/O=SnakeOil"}
	tests := []struct {
		name    string
		in      []byte
		want    []Signer
		wantErr string
	}{
		{"Debian's kernel", readFixture(t, "sbverify-list-debian.txt"), []Signer{debian}, ""},
		{"two signatures", readFixture(t, "sbverify-list-two.txt"), []Signer{debian, snakeoil}, ""},
		{"unsigned", readFixture(t, "sbverify-list-none.txt"), nil, ""},
		{"empty", nil, nil, ""},
		{"warnings only", []byte("warning: data remaining[70656 vs 83297]: gaps between PE/COFF sections?\n"), nil, ""},
		{"issuer first", []byte("image signature certificates:\n   issuer:  /CN=x\n"), nil, "issuer without a subject"},
		{"empty subject", []byte("image signature certificates:\n - subject:\n"), nil, "without a subject"},
		{"line too long", []byte(strings.Repeat("x", 70000)), nil, "reading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSignerList(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseSignerList = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseSignerList(f *testing.F) {
	for _, name := range []string{"sbverify-list-debian.txt", "sbverify-list-two.txt", "sbverify-list-none.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("image signature certificates:\n   issuer: x\n - subject: y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		signers, err := ParseSignerList(data)
		if err != nil {
			return
		}
		for _, s := range signers {
			if s.Subject == "" {
				t.Fatalf("a signer without a subject: %+v", signers)
			}
		}
	})
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	return readFile(t, filepath.Join("testdata", name))
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requireSigningTools skips a test when osslsigncode, sbsigntool, openssl or
// the EFI stub (the small PE image the tests sign) is missing.
func requireSigningTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"osslsigncode", "sbverify", "sbattach", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh vm)", tool)
		}
	}
	if _, err := os.Stat(EFIStub); err != nil {
		t.Skipf("no EFI stub to sign (scripts/install-deps.sh vm): %v", err)
	}
}

// testSecureBootKey writes a throwaway RSA key and its self-signed
// certificate (what a vendor enrolls in db) to dir.
func testSecureBootKey(t testing.TB, dir, name string) SecureBoot {
	t.Helper()
	return testSecureBootKeyValid(t, dir, name, time.Unix(0, 0), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
}

// testSecureBootKeyValid is testSecureBootKey with a certificate valid
// from notBefore to notAfter.
func testSecureBootKeyValid(t testing.TB, dir, name string, notBefore, notAfter time.Time) SecureBoot {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return writeTestKey(t, dir, name, k, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	})
}

// writeTestKey writes k (PKCS #8) and the certificate tmpl self-signed by
// it (PEM) to dir as NAME.key and NAME.pem.
func writeTestKey(t testing.TB, dir, name string, k crypto.Signer, tmpl *x509.Certificate) SecureBoot {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	sb := SecureBoot{Key: filepath.Join(dir, name+".key"), Cert: filepath.Join(dir, name+".pem")}
	if err := os.WriteFile(sb.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sb.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return sb
}

// TestSignStage signs a PE image (Debian's EFI stub stands in for the
// stage) and checks what the build relies on: sbverify accepts it with
// the signing certificate only, a changed byte breaks it, an image is
// not signed twice, and the signed image is the unsigned one with the
// signature attached (sbattach), which checks a signed stage against an
// unsigned rebuild without the key.
func TestSignStage(t *testing.T) {
	requireSigningTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	sb := testSecureBootKey(t, dir, "twinpbx test db key")
	other := testSecureBootKey(t, dir, "another key")
	stub, err := os.ReadFile(EFIStub)
	if err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(dir, UKI)
	if err := os.WriteFile(stage, stub, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := PESigners(ctx, stage); err != nil || len(s) != 0 {
		t.Fatalf("unsigned stub: signers %+v, %v", s, err)
	}
	if err := VerifyStage(ctx, stage, sb.Cert); err == nil {
		t.Fatal("an unsigned image verifies")
	}
	if err := SignStage(ctx, stage, sb); err != nil {
		t.Fatal(err)
	}
	s, err := PESigners(ctx, stage)
	if err != nil || len(s) != 1 || s[0].Subject != "/CN=twinpbx test db key" {
		t.Fatalf("signed stage: signers %+v, %v", s, err)
	}
	if err := VerifyStage(ctx, stage, sb.Cert); err != nil {
		t.Fatal(err)
	}
	if err := VerifyStage(ctx, stage, other.Cert); err == nil {
		t.Error("the stage verifies with a certificate that did not sign it")
	}
	if err := SignStage(ctx, stage, sb); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Errorf("signing a signed stage again: %v", err)
	}

	signed, err := os.ReadFile(stage)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(signed)
	tampered[len(stub)/2] ^= 1
	tamperedFile := filepath.Join(dir, "tampered.efi")
	if err := os.WriteFile(tamperedFile, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyStage(ctx, tamperedFile, sb.Cert); err == nil {
		t.Error("a signed stage with a changed byte verifies")
	}

	// The signature detached and attached again to the unsigned image
	// gives the signed image byte for byte.
	sig := filepath.Join(dir, "stage.p7")
	rebuilt := filepath.Join(dir, "rebuilt.efi")
	if err := os.WriteFile(rebuilt, stub, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--detach", sig, stage}, {"--attach", sig, rebuilt}} {
		if out, err := exec.Command("sbattach", args...).CombinedOutput(); err != nil {
			t.Fatalf("sbattach %v: %v\n%s", args, err, out)
		}
	}
	if got, _ := os.ReadFile(rebuilt); !bytes.Equal(got, signed) {
		t.Error("the unsigned stage with the signature attached is not the signed stage")
	}
}

func TestSignStageErrors(t *testing.T) {
	requireSigningTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	sb := testSecureBootKey(t, dir, "k")
	other := testSecureBootKey(t, dir, "other")
	ecdsaKey := testECDSAKey(t, dir)
	future := testSecureBootKeyValid(t, dir, "future", time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC))
	stub, err := os.ReadFile(EFIStub)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		image   []byte
		sb      SecureBoot
		wantErr string
	}{
		{"no certificate", stub, SecureBoot{Key: sb.Key}, "both a key and a certificate"},
		{"missing key", stub, SecureBoot{Key: filepath.Join(dir, "none.key"), Cert: sb.Cert}, "none.key"},
		{"key is not a key", stub, SecureBoot{Key: sb.Cert, Cert: sb.Cert}, "osslsigncode"},
		{"another key's certificate", stub, SecureBoot{Key: sb.Key, Cert: other.Cert}, "osslsigncode"},
		{"certificate is not a certificate", stub, SecureBoot{Key: sb.Key, Cert: sb.Key}, "no PEM CERTIFICATE"},
		{"ECDSA key", stub, ecdsaKey, "not RSA"},
		{"certificate valid from 2050", stub, future, "from 1970 to 2049"},
		{"signing time after 2049", stub, SecureBoot{Key: sb.Key, Cert: sb.Cert, Time: time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)}, "from 1970 to 2049"},
		{"not a PE image", []byte("not a PE image"), sb, UKI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stage := filepath.Join(t.TempDir(), UKI)
			if err := os.WriteFile(stage, tt.image, 0o644); err != nil {
				t.Fatal(err)
			}
			err := SignStage(ctx, stage, tt.sb)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if got, _ := os.ReadFile(stage); !bytes.Equal(got, tt.image) {
				t.Error("a failed signing changed the stage")
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(stage), ".*")); len(left) > 0 {
				t.Errorf("a failed signing left %v", left)
			}
		})
	}
}

// TestBuildDiskSecureBoot: with a key the stage on the EFI system
// partition is signed and verifies, and the bundle's kernel carries that
// key's signature alone (its vendor's removed: kexec reads only the
// first); without one both are as before.
func TestBuildDiskSecureBoot(t *testing.T) {
	requireSigningTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	sb := testSecureBootKey(t, dir, "db key")
	vendor := testSecureBootKey(t, dir, "kernel vendor")
	priv := testUpdateKey(t)
	stub, err := os.ReadFile(EFIStub)
	if err != nil {
		t.Fatal(err)
	}
	// A PE image signed by its vendor stands in for Debian's kernel.
	img := t.TempDir()
	kernel := filepath.Join(img, BzImage)
	if err := os.WriteFile(kernel, stub, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SignStage(ctx, kernel, vendor); err != nil {
		t.Fatal(err)
	}
	vendorKernel, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, Initramfs), []byte("an initramfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := DiskOptions{Image: img, Version: "v1", Key: priv, SlotSize: 1 << 20, DataSize: 8 << 20, StageCmdline: "console=ttyS0", SecureBoot: &sb}
	res, err := BuildDisk(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.StageSigners) != 1 || res.StageSigners[0].Subject != "/CN=db key" {
		t.Errorf("stage signers %+v", res.StageSigners)
	}
	if len(res.KernelSigners) != 1 || res.KernelSigners[0].Subject != "/CN=db key" {
		t.Errorf("kernel signers %+v, want the db key alone", res.KernelSigners)
	}
	onESP := espStage(t, filepath.Join(img, Disk))
	if err := VerifyStage(ctx, onESP, sb.Cert); err != nil {
		t.Errorf("the stage on the EFI system partition: %v", err)
	}
	if d, _ := describe(onESP); d.SHA256 != res.Stage.SHA256 {
		t.Errorf("the stage on the EFI system partition (%s) is not the one reported (%s)", d.SHA256, res.Stage.SHA256)
	}
	bundleKernel := bundlePart(t, filepath.Join(img, Bundle), update.PartKernel)
	if err := VerifyStage(ctx, bundleKernel, sb.Cert); err != nil {
		t.Errorf("the bundle's kernel: %v", err)
	}
	if a, b := readFile(t, bundleKernel), readFile(t, filepath.Join(img, SignedBzImage)); !bytes.Equal(a, b) {
		t.Errorf("the bundle's kernel is not %s", SignedBzImage)
	}
	if got, _ := os.ReadFile(kernel); !bytes.Equal(got, vendorKernel) {
		t.Error("signing changed the image's own kernel")
	}

	// Without a key the stage is unsigned and the kernel the image's.
	opts.SecureBoot = nil
	res, err = BuildDisk(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.StageSigners) != 0 || len(res.KernelSigners) != 0 {
		t.Errorf("signed without a key: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(img, SignedBzImage)); err == nil {
		t.Errorf("%s of the signed build left after a build without a key", SignedBzImage)
	}
	if s, err := PESigners(ctx, espStage(t, filepath.Join(img, Disk))); err != nil || len(s) != 0 {
		t.Errorf("the stage on the EFI system partition: signers %+v, %v", s, err)
	}
	if got, _ := os.ReadFile(bundlePart(t, filepath.Join(img, Bundle), update.PartKernel)); !bytes.Equal(got, vendorKernel) {
		t.Error("without a key the bundle's kernel is not the image's")
	}
}

// bundlePart writes the named part of the bundle file at path to a file
// of its own.
func bundlePart(t *testing.T, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := update.OpenVerified(bytesAt(b), int64(len(b)), testUpdateKey(t).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	var part bytes.Buffer
	if err := bundle.Extract(name, &part); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, part.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func testUpdateKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := update.LoadPrivateKey("../../firmware/update/testdata/test.key")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// espStage copies BOOTX64.EFI out of the EFI system partition of the
// disk image at path into a file of its own.
func espStage(t *testing.T, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), UKI)
	if err := ExtractStage(context.Background(), path, out); err != nil {
		t.Fatal(err)
	}
	return out
}
