package boot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// TestGrowGPT grows the data partition of a disk image made with the
// image's layout and then enlarged, as a flashed image on a larger disk:
// sfdisk must find the GPT sound, the data partition must reach the
// disk's end and every other partition must be as it was.
func TestGrowGPT(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name  string
		grown int64 // bytes added to the image
		want  int64 // the data partition's size after
	}{
		{"same size", 0, 128 * mib},
		{"half a MiB more: the image's spare MiB", mib / 2, 129 * mib},
		{"a few KiB more: nothing", 10 << 10, 128 * mib},
		{"1 GiB more", 1 << 30, 128*mib + 1<<30},
		{"an odd size more", 300*mib + 7*512, 128*mib + 300*mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			if err := update.CreateImage(path, 64*mib, 64*mib, 128*mib, "test"); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			before, err := update.ReadGPT(f)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			size := st.Size() + tt.grown
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			data, _ := update.Find(before, update.PartData)
			was, now, err := growGPT(f, data.Start, size)
			if err != nil {
				t.Fatal(err)
			}
			if was != 128*mib || now != tt.want {
				t.Errorf("grown from %d to %d, want 128 MiB to %d", was, now, tt.want)
			}
			after, err := update.ReadGPT(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Fatalf("%d partitions after, %d before", len(after), len(before))
			}
			for i, p := range after {
				want := before[i]
				if p.Name == update.PartData {
					want.Size = tt.want
				}
				if p != want {
					t.Errorf("partition %d: %+v, want %+v", i, p, want)
				}
			}
			// Again: nothing more to do.
			if was, now, err := growGPT(f, data.Start, size); err != nil || was != now {
				t.Errorf("second grow: %d to %d, %v", was, now, err)
			}
			if _, err := exec.LookPath("sfdisk"); err != nil {
				t.Skip("no sfdisk to check the GPT (scripts/install-deps.sh vm)")
			}
			out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "No errors detected") {
				t.Errorf("sfdisk --verify: %v\n%s", err, out)
			}
		})
	}
}

// TestGrowGPTNotOurs: a disk without a box's GPT is left byte for byte.
func TestGrowGPTNotOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, 4<<20)
	copy(img[510:], "\x55\xaa")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := growGPT(f, 1<<20, 1<<30); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("err %v, want ErrNotOurs", err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(img) {
		t.Error("the disk was changed")
	}
}
