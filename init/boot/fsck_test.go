package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestJudgeFsck(t *testing.T) {
	tests := []struct {
		code int
		err  error
		want fsckVerdict
		says string
	}{
		{0, nil, fsckMount, "clean"},
		{fsckCorrected, nil, fsckMount, "repaired"},
		{fsckRebootAsked, nil, fsckReboot, "reboot"},
		{fsckRebootAsked | fsckCorrected, nil, fsckReboot, "reboot"},
		{fsckUncorrected, nil, fsckKeep, "errors left uncorrected"},
		{fsckUncorrected | fsckCorrected, nil, fsckKeep, "errors corrected, errors left uncorrected"},
		{fsckOperational, nil, fsckKeep, "operational error"},
		{fsckUsage, nil, fsckKeep, "usage error"},
		{fsckCancelled, nil, fsckKeep, "cancelled"},
		{fsckLibrary, nil, fsckKeep, "shared library error"},
		{fsckLibrary | fsckOperational | fsckRebootAsked, nil, fsckKeep, "exit code 138"},
		{255, nil, fsckKeep, "exit code 255"},
		{-1, nil, fsckKeep, "exit code -1"},
		{-1, errors.New("signal: killed"), fsckKeep, "did not finish"},
		{-1, fmt.Errorf("running e2fsck: %w", fs.ErrNotExist), fsckUnchecked, "not in the image"},
		// An error wins over whatever code came with it.
		{0, errors.New("context deadline exceeded"), fsckKeep, "did not finish"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v", tt.code, tt.err), func(t *testing.T) {
			got, why := judgeFsck(tt.code, tt.err)
			if got != tt.want {
				t.Errorf("verdict %v, want %v (%s)", got, tt.want, why)
			}
			if !strings.Contains(why, tt.says) {
				t.Errorf("says %q, want it to say %q", why, tt.says)
			}
		})
	}
}

// TestJudgeFsckEveryCode: any code with a bit above "reboot asked" keeps
// the partition untouched, whatever else it says.
func TestJudgeFsckEveryCode(t *testing.T) {
	for code := range 256 {
		got, _ := judgeFsck(code, nil)
		if keep := code >= 4; keep != (got == fsckKeep) {
			t.Errorf("exit code %d: verdict %v", code, got)
		}
	}
}
