package twin

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLatchFile(t *testing.T) {
	dir := t.TempDir()
	l := latchFile{dir}
	if got, err := l.Latched(); err != nil || len(got) != 0 {
		t.Fatalf("no file: %v, %v; want none", got, err)
	}
	for _, want := range [][]string{{"pstn"}, {"disk", "pstn"}, nil} {
		if err := l.SetLatched(want); err != nil {
			t.Fatal(err)
		}
		got, err := l.Latched()
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("kept %v, read back %v (%v)", want, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, LatchFile)); !os.IsNotExist(err) {
		t.Fatalf("with nothing kept the file stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LatchFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("a temporary file is left: %v", err)
	}
	// Blank lines and spaces around a name are no names.
	if err := os.WriteFile(filepath.Join(dir, LatchFile), []byte("\n pstn \n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Latched(); err != nil || !slices.Equal(got, []string{"pstn"}) {
		t.Fatalf("read %v, %v; want [pstn]", got, err)
	}
	// A file that cannot be read is an error, not "none".
	if err := os.Remove(filepath.Join(dir, LatchFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, LatchFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Latched(); err == nil {
		t.Fatal("an unreadable file read as none")
	}
	if latches("") != nil {
		t.Fatal("a box without a data folder has a file for them")
	}
}
