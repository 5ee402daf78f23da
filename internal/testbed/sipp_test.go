package testbed

import (
	"fmt"
	"strings"
	"testing"
)

// TestSippReport: the error lines sipp logged before its final screen
// come first (the last ten at most), then the last 40 lines, each line
// once.
func TestSippReport(t *testing.T) {
	screen := func(n int) []string {
		var ls []string
		for i := range n {
			ls = append(ls, fmt.Sprintf("screen line %d", i))
		}
		return ls
	}
	join := func(parts ...[]string) string {
		var ls []string
		for _, p := range parts {
			ls = append(ls, p...)
		}
		return strings.Join(ls, "\n")
	}
	abort := []string{"06:19:08 Call-Id: 1-3708@127.0.0.1, receive timeout on message Basic UAC:1: aborting call"}
	var many []string
	for i := range 12 {
		many = append(many, fmt.Sprintf("Unexpected message %d", i))
	}
	tests := []struct {
		name string
		out  string
		want string
	}{
		{"empty", "", ""},
		{"no error: the tail alone", join(screen(50)), join(screen(50)[10:])},
		{"short output: all of it once", join(abort, screen(5)), join(abort, screen(5))},
		{"an abort before the tail", join(abort, screen(45)), join(abort, []string{"[…]"}, screen(45)[5:])},
		{"the case of the words does not matter", join([]string{"ERROR opening socket"}, screen(40)), join([]string{"ERROR opening socket", "[…]"}, screen(40))},
		{"the last ten errors", join(many, screen(40)), join(many[2:], []string{"[…]"}, screen(40))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SippReport(tt.out); got != tt.want {
				t.Errorf("SippReport =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
