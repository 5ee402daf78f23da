package control

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

type fakeRoller struct {
	fakePair
	paths []string
	err   error
}

func (f *fakeRoller) StartRollout(path string) error {
	f.paths = append(f.paths, path)
	return f.err
}

func TestRollout(t *testing.T) {
	standalone, err := Dial(serve(t, &fakeAppliance{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standalone.StartRollout("x.bundle"); err == nil || !strings.Contains(err.Error(), ErrNotPair.Error()) {
		t.Fatalf("rollout on a standalone box = %v, want %q", err, ErrNotPair)
	}

	fr := &fakeRoller{}
	c, err := Dial(serve(t, fr))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.StartRollout("new.bundle")
	if err != nil || got != "rolling update started" {
		t.Fatalf("StartRollout = %q, %v", got, err)
	}
	want, _ := filepath.Abs("new.bundle")
	if len(fr.paths) != 1 || fr.paths[0] != want {
		t.Errorf("the box was asked for %v, want [%s] (an absolute path)", fr.paths, want)
	}
	fr.err = errors.New("a rolling update is already under way")
	if _, err := c.StartRollout("/b"); err == nil || !strings.Contains(err.Error(), "already under way") {
		t.Errorf("a refused roll must carry the reason, got %v", err)
	}
}

// Bad requests are refused before the box is asked.
func TestRolloutBadRequests(t *testing.T) {
	tests := []struct{ name, body string }{
		{"not JSON", "bundle=/x"},
		{"relative path", `{"bundle":"x.bundle"}`},
		{"no path", `{}`},
	}
	fr := &fakeRoller{}
	h := Handler(fr)
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/rollout", strings.NewReader(tt.body)))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tt.name, rec.Code)
		}
	}
	if len(fr.paths) != 0 {
		t.Errorf("the box was asked %v", fr.paths)
	}
}
