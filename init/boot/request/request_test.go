package request

import (
	"os"
	"testing"
)

func TestRebootOutsideInit(t *testing.T) {
	for _, env := range []string{"", "1"} {
		t.Setenv(EnvConsole, env) // with "1" the parent is still the test runner, not PID 1
		if UnderInit() {
			t.Fatalf("%s=%q: under init", EnvConsole, env)
		}
		if err := Reboot(true); err != ErrNotUnderInit {
			t.Fatalf("Reboot = %v, want ErrNotUnderInit", err)
		}
		if _, err := os.Stat(ResetFile); err == nil {
			t.Fatal("a refused request left a factory reset request behind")
		}
	}
}
