package update

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// memDisk is an in-memory disk.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m)) {
		return 0, errors.New("EOF")
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("write beyond the disk")
	}
	return copy(m[off:], p), nil
}

func TestGPTRoundTrip(t *testing.T) {
	parts, size := Layout(0, 3*mib+1, 4*mib)
	if size != 15*mib {
		t.Fatalf("disk size %d, want 15 MiB (1 + state 1 + 4 + 4 + data 4 + 1 for the backup GPT)", size)
	}
	d := make(memDisk, size)
	if err := WriteGPT(d, size, parts, "seed"); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGPT(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(parts) {
		t.Fatalf("read %d partitions, wrote %d", len(got), len(parts))
	}
	for i := range parts {
		if got[i] != parts[i] {
			t.Errorf("partition %d = %+v, want %+v", i, got[i], parts[i])
		}
	}
	if p, ok := Find(got, PartData); !ok || p.Start != 10*mib {
		t.Errorf("data partition %+v %v", p, ok)
	}
	// The same layout and seed give the same bytes.
	d2 := make(memDisk, size)
	_ = WriteGPT(d2, size, parts, "seed")
	if !bytes.Equal(d, d2) {
		t.Error("GPT not reproducible")
	}
	// A flipped bit in the header or the entries is found.
	for _, off := range []int64{SectorSize + 40, 2*SectorSize + 60} {
		bad := append(memDisk{}, d...)
		bad[off] ^= 1
		if _, err := ReadGPT(bad); !errors.Is(err, ErrNoGPT) {
			t.Errorf("flipped byte at %d: %v", off, err)
		}
	}
	if _, err := ReadGPT(make(memDisk, size)); !errors.Is(err, ErrNoGPT) {
		t.Errorf("blank disk: %v", err)
	}
	if err := WriteGPT(make(memDisk, size), size/2, parts, "seed"); err == nil {
		t.Error("partitions beyond the disk: no error")
	}
}

// TestGPTSfdisk checks our GPT with util-linux's reading of it.
func TestGPTSfdisk(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Fatal("sfdisk missing: run scripts/install-deps.sh vm")
	}
	parts, size := Layout(2*mib, 2*mib, 3*mib)
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := WriteGPT(f, size, parts, "x"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Fatalf("sfdisk --verify: %v\n%s", err, out)
	}
	out, err = exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var dump struct {
		PartitionTable struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
				Type, Name  string
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pt := dump.PartitionTable
	if pt.Label != "gpt" || len(pt.Partitions) != len(parts) {
		t.Fatalf("sfdisk sees %s\n%s", pt.Label, out)
	}
	for i, p := range pt.Partitions {
		want := parts[i]
		wantType := "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
		if want.Type == TypeLinuxReserved {
			wantType = "8DA63339-0007-60C0-C436-083AC8230908"
		}
		if want.Type == TypeEFISystem {
			wantType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
		}
		if p.Name != want.Name || p.Start*SectorSize != want.Start || p.Size*SectorSize != want.Size || p.Type != wantType {
			t.Errorf("sfdisk partition %d: %+v, want %+v", i, p, want)
		}
	}
}

func FuzzReadGPT(f *testing.F) {
	parts, size := Layout(0, mib, mib)
	d := make(memDisk, size)
	_ = WriteGPT(d, size, parts, "f")
	f.Add([]byte(d[:34*SectorSize]))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ReadGPT(memDisk(b))
		if err != nil {
			return
		}
		for _, p := range got {
			if p.Size <= 0 || p.Start < 0 {
				t.Fatalf("partition %+v", p)
			}
		}
	})
}

// TestFitGPT flashes an image onto a larger disk and moves the backup
// GPT to its end; sfdisk must find nothing wrong.
func TestFitGPT(t *testing.T) {
	parts, size := Layout(0, mib, mib)
	path := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := WriteGPT(f, size, parts, "fit"); err != nil {
		t.Fatal(err)
	}
	big := size + 7*mib
	if err := f.Truncate(big); err != nil {
		t.Fatal(err)
	}
	if err := FitGPT(f, big); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGPT(f)
	if err != nil || len(got) != len(parts) || got[len(got)-1] != parts[len(parts)-1] {
		t.Fatalf("after FitGPT: %+v, %v", got, err)
	}
	out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Fatalf("sfdisk --verify after FitGPT: %v\n%s", err, out)
	}
	js, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		PartitionTable struct {
			LastLBA int64 `json:"lastlba"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(js, &dump); err != nil {
		t.Fatal(err)
	}
	if want := (big-mib)/SectorSize - 1; dump.PartitionTable.LastLBA < want {
		t.Errorf("sfdisk: last usable sector %d, want at least %d", dump.PartitionTable.LastLBA, want)
	}
	// The same size again changes nothing; a disk smaller than the
	// partitions is refused.
	if err := FitGPT(f, big); err != nil {
		t.Fatal(err)
	}
	if err := FitGPT(f, 2*mib); err == nil {
		t.Error("fitting the GPT to a disk smaller than its partitions: no error")
	}
}
