package sipreason

import "testing"

func TestPhrase(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{{486, "Busy Here"}, {503, "Service Unavailable"}, {600, "Busy Everywhere"}, {599, ""}, {0, ""}} {
		if got := Phrase(tc.code); got != tc.want {
			t.Errorf("Phrase(%d) = %q, want %q", tc.code, got, tc.want)
		}
	}
}
