package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/appliance"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/supervisor"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"usage", usageError{"no command given"}, 2},
		{"config problems", fmt.Errorf("loading: %w", &config.Error{Problems: []config.Problem{{Msg: "bad"}}}), supervisor.ExitConfigError},
		{"config error", &appliance.ConfigError{Err: errors.New("board \"x\": unknown")}, supervisor.ExitConfigError},
		{"anything else", errors.New("disk full"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
