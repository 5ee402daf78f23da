package card

import (
	"context"
	"sync"
)

// PipeDepth is how many records a pipe holds in each direction before Send
// waits for the reader.
const PipeDepth = 512

// Pipe returns two cards joined back to back: what one sends, the other
// receives, in order. Closing either end closes both. Records are copied on
// Send, so callers may reuse their buffers.
func Pipe() (Card, Card) {
	ab := make(chan Record, PipeDepth)
	ba := make(chan Record, PipeDepth)
	sh := &pipeShared{done: make(chan struct{})}
	return &pipeEnd{in: ba, out: ab, sh: sh}, &pipeEnd{in: ab, out: ba, sh: sh}
}

type pipeShared struct {
	once sync.Once
	done chan struct{}
}

type pipeEnd struct {
	in  <-chan Record
	out chan<- Record
	sh  *pipeShared
}

func (p *pipeEnd) Receive(ctx context.Context) (Record, error) {
	// Deliver what was sent before a close.
	select {
	case r := <-p.in:
		return r, nil
	default:
	}
	select {
	case r := <-p.in:
		return r, nil
	case <-p.sh.done:
		return Record{}, ErrClosed
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
}

func (p *pipeEnd) Send(r Record) error {
	if err := r.validate(); err != nil {
		return err
	}
	r.Data = append([]byte(nil), r.Data...)
	select {
	case <-p.sh.done:
		return ErrClosed
	default:
	}
	select {
	case p.out <- r:
		return nil
	case <-p.sh.done:
		return ErrClosed
	}
}

func (p *pipeEnd) Close() error {
	p.sh.once.Do(func() { close(p.sh.done) })
	return nil
}
