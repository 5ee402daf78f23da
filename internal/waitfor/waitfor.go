// Package waitfor is the tests' poll with a deadline: wait for a
// condition instead of sleeping a fixed time.
package waitfor

import (
	"testing"
	"time"
)

// Cond polls cond until it holds, 1 ms apart at first and at most 50 ms
// apart later; when timeout passes first it fails the test, naming what
// it waited for.
func Cond(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}
