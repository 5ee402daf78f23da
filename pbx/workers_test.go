package pbx

import (
	"sync"
	"testing"
	"time"
)

// TestWorkers: a handler that blocks holds its worker only, the others go
// on; workers are reused, and no more than maxIdle wait for work.
func TestWorkers(t *testing.T) {
	p := newWorkers(2)
	release := make(chan struct{})
	blocked := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.do(func() { close(blocked); <-release })
	}()
	<-blocked
	ran := make(chan struct{})
	go func() { p.do(func() { close(ran) }) }()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a request waited for a blocked handler")
	}
	close(release)
	wg.Wait()

	// Many at once, then the idle ones are bounded.
	start := make(chan struct{})
	var all sync.WaitGroup
	for range 10 {
		all.Add(1)
		go func() {
			defer all.Done()
			p.do(func() { <-start })
		}()
	}
	close(start)
	all.Wait()
	p.mu.Lock()
	idle := len(p.idle)
	p.mu.Unlock()
	if idle > 2 {
		t.Errorf("%d idle workers, want at most 2", idle)
	}
	// A worker is reused: the same goroutine runs consecutive requests.
	var ids []*worker
	for range 3 {
		w := p.get()
		ids = append(ids, w)
		w.in <- job{fn: func() {}, wait: true}
		<-w.done
		p.put(w)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Error("consecutive requests did not reuse the idle worker")
	}
}
