package pbx

import "sync"

// workers runs request handlers on goroutines that outlive one request.
// sipgo starts a new goroutine for every request; its stack starts small
// and grows (copied, frame by frame) as the handler descends through the
// registrar, digest check and store, which cost about a tenth of the CPU
// of a REGISTER. A worker's stack grows once and serves many requests
// (the GC may shrink an idle one; it then grows again once).
//
// A handler that blocks (an INVITE rings for up to a minute) holds its
// worker; the next request gets a new one. At most maxIdle workers wait
// for work, the others end.
type workers struct {
	mu      sync.Mutex
	idle    []*worker
	maxIdle int
}

type worker struct {
	pool *workers
	in   chan job
	done chan struct{}
}

// job is one handler call. With wait the caller is told on done when it
// returns and puts the worker back; otherwise the worker goes back to the
// pool by itself.
type job struct {
	fn   func()
	wait bool
}

func newWorkers(maxIdle int) *workers { return &workers{maxIdle: maxIdle} }

// do runs fn on a worker and returns when it has returned.
func (p *workers) do(fn func()) {
	w := p.get()
	w.in <- job{fn: fn, wait: true}
	<-w.done
	p.put(w)
}

// submit runs fn on a worker and returns at once.
func (p *workers) submit(fn func()) {
	p.get().in <- job{fn: fn}
}

func (p *workers) get() *worker {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return w
	}
	p.mu.Unlock()
	w := &worker{pool: p, in: make(chan job), done: make(chan struct{})}
	go w.run()
	return w
}

func (p *workers) put(w *worker) {
	p.mu.Lock()
	if len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	close(w.in)
}

func (w *worker) run() {
	for j := range w.in {
		j.fn()
		if j.wait {
			w.done <- struct{}{}
		} else {
			w.pool.put(w)
		}
	}
}
