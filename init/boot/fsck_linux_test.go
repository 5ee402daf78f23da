package boot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFsckOnImage runs the image's e2fsck step (sysDataOps.fsck) on an
// ext4 in a file, as mke2fs made it, then damaged by debugfs in the ways
// the boot must tell apart.
func TestFsckOnImage(t *testing.T) {
	for _, p := range []string{Mke2fs, E2fsck, "/sbin/debugfs"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no %s here (scripts/install-deps.sh vm installs e2fsprogs): %v", p, err)
		}
	}
	tests := []struct {
		name   string
		damage [][]string // debugfs -w requests
		want   fsckVerdict
		code   int
	}{
		{"clean", nil, fsckMount, 0},
		{"not cleanly unmounted, a wrong free count: preened", [][]string{{"ssv state 0"}, {"ssv free_blocks_count 1234"}}, fsckMount, fsckCorrected},
		{"root inode cleared: left for a person", [][]string{{"clri <2>"}, {"ssv state 0"}}, fsckKeep, fsckUncorrected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := filepath.Join(t.TempDir(), "data.img")
			if err := os.WriteFile(dev, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(dev, 64<<20); err != nil {
				t.Fatal(err)
			}
			if err := sysDataOps.mkfs(context.Background(), dev); err != nil {
				t.Fatal(err)
			}
			for _, req := range tt.damage {
				if out, err := exec.Command("/sbin/debugfs", "-w", "-R", req[0], dev).CombinedOutput(); err != nil {
					t.Fatalf("debugfs %s: %v\n%s", req[0], err, out)
				}
			}
			code, out, err := sysDataOps.fsck(context.Background(), dev)
			if err != nil {
				t.Fatalf("e2fsck did not run: %v\n%s", err, out)
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d\n%s", code, tt.code, out)
			}
			if got, why := judgeFsck(code, err); got != tt.want {
				t.Errorf("verdict %v (%s), want %v", got, why, tt.want)
			}
			if tt.want == fsckMount {
				// What was repaired stays repaired: the next boot finds it clean.
				if code, out, _ := sysDataOps.fsck(context.Background(), dev); code != 0 {
					t.Errorf("second e2fsck: exit code %d\n%s", code, out)
				}
			}
		})
	}
}
