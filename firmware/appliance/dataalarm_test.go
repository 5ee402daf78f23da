package appliance

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDataAlarm: init's alarm file, when there, is the status's
// data_alarm (one line, trimmed); no file, no alarm.
func TestDataAlarm(t *testing.T) {
	old := dataAlarmFile
	t.Cleanup(func() { dataAlarmFile = old })
	dataAlarmFile = filepath.Join(t.TempDir(), "data-alarm")
	if got := dataAlarm(); got != "" {
		t.Errorf("no file: alarm %q", got)
	}
	if err := os.WriteFile(dataAlarmFile, []byte("data partition damaged: running on tmpfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := dataAlarm(), "data partition damaged: running on tmpfs"; got != want {
		t.Errorf("alarm %q, want %q", got, want)
	}
}
