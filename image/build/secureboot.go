package build

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// Secure Boot. A board with UEFI Secure Boot on starts only EFI programs
// signed by a key in its db (or by a shim whose key is). The boot stage
// (BOOTX64.EFI) is signed at build time with osslsigncode. Its kernel,
// Debian's, then runs locked down, and kexec_file_load starts only a
// kernel signed by a key the kernel trusts: the bundle's kernel is
// signed with the same key (SignKernel), which the kernel finds in its
// platform keyring (the firmware's db).
//
// The signatures are reproducible: an Authenticode signature made with
// an RSA key (PKCS #1 v1.5, no random padding) over the same image, with
// the same key, certificate and signing time, is the same bytes, and the
// signing time is not the clock's but SecureBoot.Time (SigningTime is
// the one a build uses, SignedTime how the certificate bounds it).
// sbverify (sbsigntool) checks every signed file independently of the
// tool that signed it.

// SecureBoot names the key the boot stage is signed with.
type SecureBoot struct {
	// Key is the private key, PEM, RSA (an encrypted one makes OpenSSL
	// ask for its passphrase on the terminal).
	Key string
	// Cert is its X.509 certificate, PEM: the one enrolled in the
	// board's db.
	Cert string
	// Time is the signing time written into the signatures' signed
	// attributes, moved into the certificate's validity (SignedTime:
	// firmware ignores the time, Linux's kexec wants it there). BuildDisk
	// fills a zero Time from SigningTime; SignStage and SignKernel sign a
	// zero Time as the start of the certificate's validity.
	Time time.Time
}

// Signer is one signature's certificate in a PE image's signature table.
type Signer struct {
	Subject, Issuer string
}

// maxEpoch is the last second of year 9999, the latest time a
// certificate or signature can carry (GeneralizedTime has four digits
// for the year).
const maxEpoch = 253402300799

// maxSigningEpoch is the last second of 2049, the latest signing time:
// osslsigncode writes it as an ASN.1 UTCTime (two-digit years, 1950 to
// 2049) and writes a later one wrongly.
const maxSigningEpoch = 2524607999

// ParseSourceDateEpoch reads a SOURCE_DATE_EPOCH value: decimal seconds
// since the Unix epoch, digits only, as `date +%s` prints them
// (reproducible-builds.org's specification).
func ParseSourceDateEpoch(s string) (time.Time, error) {
	if s == "" || len(s) > len("253402300799") || strings.Trim(s, "0123456789") != "" {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970, digits only", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxEpoch {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970 before year 10000", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// SigningTime is the time a build signs for Secure Boot at:
// SOURCE_DATE_EPOCH when it is set (and not empty), else the
// modification time of kernel, the image's bzImage, which Build copies
// from Debian's kernel file: dpkg unpacks that with the date the package
// was made, so it is pinned with the kernel package. Either way the same
// inputs give the same time, and the same signed bytes. SignStage then
// moves it into the certificate's validity (SignedTime).
func SigningTime(kernel string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		t, err := ParseSourceDateEpoch(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("choosing the signing time: %w", err)
		}
		return t, nil
	}
	st, err := os.Stat(kernel)
	if err != nil {
		return time.Time{}, fmt.Errorf("choosing the signing time from the kernel's date: %w", err)
	}
	return st.ModTime().UTC().Truncate(time.Second), nil
}

// SignedTime is the time SignStage signs at with sb: sb.Time moved into
// the validity of sb.Cert (a zero Time is its start). Linux's kexec
// refuses a kernel whose signing time is outside its signer's
// certificate, so a build dated before a key made later still boots.
func (sb SecureBoot) SignedTime() (time.Time, error) {
	c, err := SigningCert(sb.Cert)
	if err != nil {
		return time.Time{}, err
	}
	return signedTime(sb.Time, c)
}

func signedTime(t time.Time, c *x509.Certificate) (time.Time, error) {
	if c.NotAfter.Before(c.NotBefore) {
		// No time is within it: moved to either end, the signature
		// would be outside the other.
		return time.Time{}, fmt.Errorf("the certificate's validity ends (%s) before it starts (%s)", c.NotAfter.Format(time.RFC3339), c.NotBefore.Format(time.RFC3339))
	}
	if t.Before(c.NotBefore) {
		t = c.NotBefore
	}
	if t.After(c.NotAfter) {
		t = c.NotAfter
	}
	t = t.UTC().Truncate(time.Second)
	if n := t.Unix(); n < 0 || n > maxSigningEpoch {
		return time.Time{}, fmt.Errorf("signing time %s: want one from 1970 to 2049 (osslsigncode writes it as an ASN.1 UTCTime, whose years end there) within the certificate's validity", t.Format(time.RFC3339))
	}
	return t, nil
}

// SigningCert reads the signer's certificate from the PEM file cert (the
// first one in it) and checks that it is for an RSA key: UEFI firmware
// checks RSA signatures (RSA-2048 is what the specification asks every
// firmware to support), and an RSA signature (PKCS #1 v1.5) is the same
// bytes every time, where an ECDSA one is not.
func SigningCert(cert string) (*x509.Certificate, error) {
	b, err := os.ReadFile(cert)
	if err != nil {
		return nil, fmt.Errorf("reading the Secure Boot certificate: %w", err)
	}
	c, err := parseSigningCert(b)
	if err != nil {
		return nil, fmt.Errorf("the Secure Boot certificate %s: %w", cert, err)
	}
	return c, nil
}

func parseSigningCert(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing: %w", err)
		}
		if c.PublicKeyAlgorithm != x509.RSA {
			return nil, fmt.Errorf("its key is %s, not RSA: firmware checks RSA signatures, and only those are reproducible", c.PublicKeyAlgorithm)
		}
		return c, nil
	}
}

// SignStage signs the PE image at path in place with osslsigncode
// (SHA-256, signing time sb.SignedTime) and checks the result with sbverify
// --cert. The same image, key, certificate, time and osslsigncode
// version give the same bytes.
func SignStage(ctx context.Context, path string, sb SecureBoot) error {
	if sb.Key == "" || sb.Cert == "" {
		return errors.New("signing the boot stage: both a key and a certificate are needed")
	}
	for _, f := range []string{sb.Key, sb.Cert} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("signing the boot stage: %w", err)
		}
	}
	at, err := sb.SignedTime()
	if err != nil {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	signers, err := PESigners(ctx, path)
	if err != nil {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	if len(signers) > 0 {
		// Signing would add a second signature; firmware checks any of
		// them, and a stale one has no business there.
		return fmt.Errorf("signing the boot stage: %s is already signed by %s", path, signers[0].Subject)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".signed")
	defer os.Remove(tmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	cmd := exec.CommandContext(ctx, "osslsigncode", "sign", "-h", "sha256", "-time", strconv.FormatInt(at.Unix(), 10),
		"-certs", sb.Cert, "-key", sb.Key, "-in", path, "-out", tmp)
	cmd.Stdin = os.Stdin // a passphrase, when the key has one
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("signing the boot stage (osslsigncode, scripts/install-deps.sh vm): %w\n%s", err, strings.TrimSpace(string(out)))
	}
	if err := VerifyStage(ctx, tmp, sb.Cert); err != nil {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("signing the boot stage: %w", err)
	}
	return nil
}

// VerifyStage checks that the PE image at path carries a valid signature
// by cert (sbverify --cert).
func VerifyStage(ctx context.Context, path, cert string) error {
	out, err := exec.CommandContext(ctx, "sbverify", "--cert", cert, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("checking the signature of %s with %s (sbverify): %w\n%s", filepath.Base(path), cert, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PESigners lists the certificates that signed the PE image at path, as
// sbverify --list names them; none for an unsigned image.
func PESigners(ctx context.Context, path string) ([]Signer, error) {
	cmd := exec.CommandContext(ctx, "sbverify", "--list", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("listing the signatures of %s (sbverify, scripts/install-deps.sh vm): %w\n%s", filepath.Base(path), err, strings.TrimSpace(stderr.String()))
	}
	return ParseSignerList(stdout.Bytes())
}

// ParseSignerList reads sbverify --list's output: for each signature, its
// certificates' subject and issuer lines. "No signature table present" is
// an unsigned image.
func ParseSignerList(out []byte) ([]Signer, error) {
	var signers []Signer
	inCerts := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "warning:"):
		case line == "No signature table present":
			return nil, nil
		case strings.HasPrefix(line, "signature "):
			inCerts = false
		case line == "image signature certificates:":
			inCerts = true
		case line == "image signature issuers:":
			inCerts = false
		case inCerts && strings.HasPrefix(line, "- subject:"):
			signers = append(signers, Signer{Subject: strings.TrimSpace(strings.TrimPrefix(line, "- subject:"))})
		case inCerts && strings.HasPrefix(line, "issuer:"):
			if len(signers) == 0 || signers[len(signers)-1].Issuer != "" {
				return nil, fmt.Errorf("sbverify --list: issuer without a subject: %q", line)
			}
			signers[len(signers)-1].Issuer = strings.TrimSpace(strings.TrimPrefix(line, "issuer:"))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading sbverify --list's output: %w", err)
	}
	for _, s := range signers {
		if s.Subject == "" {
			return nil, errors.New("sbverify --list: a certificate without a subject")
		}
	}
	return signers, nil
}

// SignedBzImage is the bundle's kernel signed for Secure Boot, in the
// image folder next to Debian's bzImage.
const SignedBzImage = "bzImage.signed"

// SignKernel writes the kernel in with its signatures replaced by one
// made with sb's key to out, and checks it. Under Secure Boot Debian's
// kernel is locked down, and its kexec_file_load starts only a kernel
// whose first signature (the only one it reads) chains to a key in its
// builtin keyring (Debian's kernel has only its module signing key
// there, not Debian's Secure Boot CA) or in the platform keyring (the
// firmware's db): the key that signs the stage, in db, is such a key.
func SignKernel(ctx context.Context, in, out string, sb SecureBoot) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("signing the kernel: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".unsigned")
	defer os.Remove(tmp)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("signing the kernel: %w", err)
	}
	for range 8 {
		signers, err := PESigners(ctx, tmp)
		if err != nil {
			return fmt.Errorf("signing the kernel: %w", err)
		}
		if len(signers) == 0 {
			break
		}
		if out, err := exec.CommandContext(ctx, "sbattach", "--remove", tmp).CombinedOutput(); err != nil {
			return fmt.Errorf("signing the kernel: removing its signature by %s (sbattach): %w\n%s", signers[0].Subject, err, strings.TrimSpace(string(out)))
		}
	}
	if err := SignStage(ctx, tmp, sb); err != nil {
		return fmt.Errorf("signing the kernel: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("signing the kernel: %w", err)
	}
	return nil
}

// secureBootKernel is the kernel file the bundle is made of: with
// SecureBoot, the image's kernel signed with its key (SignedBzImage in
// o.Out), whose signers go to res; else the image's own (and no
// SignedBzImage is left in o.Out).
func secureBootKernel(ctx context.Context, o DiskOptions, res *DiskResult) (string, error) {
	kernel := filepath.Join(o.Image, BzImage)
	signed := filepath.Join(o.Out, SignedBzImage)
	if o.SecureBoot == nil {
		// A signed kernel of an earlier build is not this build's.
		if err := os.Remove(signed); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("removing the signed kernel of an earlier build: %w", err)
		}
		return kernel, nil
	}
	if err := SignKernel(ctx, kernel, signed, *o.SecureBoot); err != nil {
		return "", err
	}
	var err error
	res.KernelSigners, err = PESigners(ctx, signed)
	return signed, err
}

// secureBootStage signs the boot stage uki when o asks for it and
// records its signers and its sum in res.
func secureBootStage(ctx context.Context, o DiskOptions, uki string, res *DiskResult) error {
	if o.SecureBoot != nil {
		if err := SignStage(ctx, uki, *o.SecureBoot); err != nil {
			return err
		}
		var err error
		if res.StageSigners, err = PESigners(ctx, uki); err != nil {
			return err
		}
	}
	var err error
	res.Stage, err = describe(uki)
	return err
}

// ExtractStage copies the boot stage (BOOTX64.EFI) out of the EFI system
// partition of the disk image at disk into the file out (mtools on a
// copy of the partition), so that its signature can be checked.
func ExtractStage(ctx context.Context, disk, out string) error {
	esp, err := update.ImageDisk{Path: disk}.Open(update.PartESP)
	if err != nil {
		return fmt.Errorf("reading the boot stage of %s: %w", disk, err)
	}
	defer esp.Close()
	fat := make([]byte, esp.Size())
	if _, err := esp.ReadAt(fat, 0); err != nil {
		return fmt.Errorf("reading the EFI system partition of %s: %w", disk, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".esp-*")
	if err != nil {
		return fmt.Errorf("reading the boot stage of %s: %w", disk, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(fat)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying the EFI system partition of %s: %w", disk, err)
	}
	if b, err := exec.CommandContext(ctx, "mcopy", "-n", "-i", tmp.Name(), "::/EFI/BOOT/"+UKI, out).CombinedOutput(); err != nil {
		return fmt.Errorf("reading %s from the EFI system partition of %s: %w: %s", UKI, disk, err, bytes.TrimSpace(b))
	}
	return nil
}
