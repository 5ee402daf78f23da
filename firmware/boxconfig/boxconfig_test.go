package boxconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// latestVersion is the newest stored version, 0 when none is stored.
func latestVersion(t testing.TB, st *store.Store) uint64 {
	t.Helper()
	ver, _, err := st.LatestConfig()
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

// TestImport imports a sequence of files into one store: a config is
// stored as the next version unless it has the same settings as the
// newest one, and a bad one is refused with its file and line and
// stores nothing.
func TestImport(t *testing.T) {
	st := openStore(t)
	for _, step := range []struct {
		file    string
		want    uint64 // the version that holds it
		wantErr string // in the error; "" for none
	}{
		{file: "bad-syntax.yaml", wantErr: "bad-syntax.yaml:2"},
		{file: "office.yaml", want: 1},
		{file: "office.yaml", want: 1},
		{file: "office-reformatted.yaml", want: 1},
		{file: "bad-duplicate.yaml", wantErr: "bad-duplicate.yaml:11"},
		{file: "bad-field.yaml", wantErr: "colour"},
		{file: "office-renamed.yaml", want: 2},
		{file: "office.yaml", want: 3},
	} {
		before := latestVersion(t, st)
		ver, err := Import(st, readFixture(t, step.file), step.file)
		if step.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), step.wantErr) {
				t.Fatalf("Import(%s) = %d, %v; want an error with %q", step.file, ver, err, step.wantErr)
			}
			if got := latestVersion(t, st); got != before {
				t.Fatalf("Import(%s) failed but the newest version went from %d to %d", step.file, before, got)
			}
			continue
		}
		if err != nil || ver != step.want {
			t.Fatalf("Import(%s) = %d, %v; want %d", step.file, ver, err, step.want)
		}
		if got := latestVersion(t, st); got != step.want {
			t.Fatalf("after Import(%s) the newest version is %d, want %d", step.file, got, step.want)
		}
		// What Export gives is the file's settings with its version.
		text, err := Export(st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.Parse("exported", text)
		if err != nil {
			t.Fatalf("the exported config does not parse: %v\n%s", err, text)
		}
		want, err := config.Parse(step.file, readFixture(t, step.file))
		if err != nil {
			t.Fatal(err)
		}
		want.Version = step.want
		if !got.Equal(want) {
			t.Fatalf("after Import(%s) Export gave\n%s", step.file, text)
		}
	}
}

func TestExportEmpty(t *testing.T) {
	text, err := Export(openStore(t))
	if err == nil || !strings.Contains(err.Error(), "no config stored yet") {
		t.Fatalf("Export of an empty store = %q, %v; want the no-config error", text, err)
	}
}

// TestSave: the caller's config is left as it was, and its version is
// not what makes two configs differ.
func TestSave(t *testing.T) {
	st := openStore(t)
	cfg, err := Parse("office.yaml", readFixture(t, "office.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = 7
	for i, want := range []uint64{1, 1} {
		saved, err := Save(st, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if saved.Version != want || cfg.Version != 7 {
			t.Fatalf("Save #%d: saved version %d (want %d), the caller's now %d (want 7)", i+1, saved.Version, want, cfg.Version)
		}
	}
}

// TestParse: the name given is the one in the error messages, and a
// config that parses but does not validate is refused.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		file, wantErr string
	}{
		{"office.yaml", ""},
		{"bad-syntax.yaml", "stick/box.yaml:2"},
		{"bad-duplicate.yaml", "stick/box.yaml:11"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := Parse("stick/box.yaml", readFixture(t, tc.file))
			switch {
			case tc.wantErr == "" && (err != nil || cfg == nil):
				t.Fatalf("Parse = %v, %v", cfg, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Parse = %v, %v; want an error with %q", cfg, err, tc.wantErr)
			}
		})
	}
}

// FuzzImport: whatever the text, Import does not panic; a refused text
// stores nothing, and an accepted one is what Export then gives (the
// same settings, by the marshalled form Save compares).
func FuzzImport(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			f.Add(readFixture(f, e.Name()))
		}
	}
	st := openStore(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		before := latestVersion(t, st)
		ver, err := Import(st, text, "fuzz")
		after := latestVersion(t, st)
		if err != nil {
			if after != before {
				t.Fatalf("Import failed (%v) but the newest version went from %d to %d", err, before, after)
			}
			return
		}
		if ver != after || (ver != before && ver != before+1) {
			t.Fatalf("Import = version %d; newest before %d, after %d", ver, before, after)
		}
		stored, err := Export(st)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(marshalNoVersion(t, stored), marshalNoVersion(t, text)) {
			t.Fatalf("stored\n%s\nfor the imported\n%s", stored, text)
		}
	})
}

func marshalNoVersion(t *testing.T, text []byte) []byte {
	t.Helper()
	cfg, err := config.Parse("text", text)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = 0
	b, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
