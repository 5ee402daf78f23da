package pbx

import "testing"

func TestReadProcess(t *testing.T) {
	p := readProcess()
	if p.Goroutines == 0 || p.HeapObjects == 0 {
		t.Errorf("readProcess() = %+v: goroutines and heap must be seen", p)
	}
}
