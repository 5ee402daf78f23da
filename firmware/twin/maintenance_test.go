package twin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMaintenanceMark(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		set  *bool
		want bool
	}{
		{nil, false},
		{ptr(true), true},
		{ptr(true), true},
		{ptr(false), false},
		{ptr(false), false},
		{ptr(true), true},
	}
	for i, st := range steps {
		if st.set != nil {
			if err := saveMaintenance(dir, *st.set); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		got, err := loadMaintenance(dir)
		if err != nil || got != st.want {
			t.Fatalf("step %d: maintenance %v, %v; want %v", i, got, err, st.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, MaintenanceFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

func TestMaintenanceMarkUnwritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if err := saveMaintenance(dir, true); err == nil {
		t.Fatal("marking maintenance in a missing folder succeeded")
	}
	if on, err := loadMaintenance(dir); err != nil || on {
		t.Fatalf("missing folder: %v, %v; want not in maintenance", on, err)
	}
}

func ptr[T any](v T) *T { return &v }
