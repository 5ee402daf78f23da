package card

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/twinpbx/twinpbx/hw/serial"
)

// Serial is a card on a byte stream (a serial port): each record travels
// as one async-HDLC frame (see AppendFrame). Frames that fail their check
// and records that do not parse are dropped, logged and counted; the
// stream carries on at the next flag.
type Serial struct {
	rw  io.ReadWriteCloser
	log *slog.Logger

	wmu  sync.Mutex // serializes writes: one frame at a time on the wire
	rbuf []byte     // the record being sent, before framing
	wbuf []byte

	recs    chan Record
	done    chan struct{}
	once    sync.Once
	readErr error // set before recs is closed
	dropped atomic.Uint64
}

var _ Card = (*Serial)(nil)

// OpenSerial opens the card's serial port.
func OpenSerial(cfg serial.Config, log *slog.Logger) (*Serial, error) {
	p, err := serial.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening ISDN card: %w", err)
	}
	return NewSerial(p, log), nil
}

// NewSerial runs the card protocol over rw, which it owns from now on (Close
// closes it). A goroutine reads rw until it fails or is closed.
func NewSerial(rw io.ReadWriteCloser, log *slog.Logger) *Serial {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Serial{rw: rw, log: log, recs: make(chan Record, PipeDepth), done: make(chan struct{})}
	go s.read()
	return s
}

func (s *Serial) read() {
	defer close(s.recs)
	var dec Decoder
	buf := make([]byte, 4096)
	bad := func(err error) {
		s.dropped.Add(1)
		s.log.Warn("ISDN card: frame dropped", "err", err)
	}
	for {
		n, err := s.rw.Read(buf)
		dec.Feed(buf[:n], func(p []byte) {
			r, err := ParseRecord(p)
			if err != nil {
				bad(err)
				return
			}
			select {
			case s.recs <- r:
			case <-s.done:
			}
		}, bad)
		if err != nil {
			select {
			case <-s.done:
				s.readErr = ErrClosed
			default:
				s.readErr = fmt.Errorf("reading from ISDN card: %w", err)
			}
			return
		}
	}
}

// Receive returns the next good record.
func (s *Serial) Receive(ctx context.Context) (Record, error) {
	select {
	case r, ok := <-s.recs:
		if !ok {
			return Record{}, s.readErr
		}
		return r, nil
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
}

// Send writes r as one frame.
func (s *Serial) Send(r Record) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	p, err := r.Append(s.rbuf[:0])
	if err != nil {
		return err
	}
	s.rbuf = p
	s.wbuf = AppendFrame(s.wbuf[:0], p)
	if _, err := s.rw.Write(s.wbuf); err != nil {
		return fmt.Errorf("writing to ISDN card: %w", err)
	}
	return nil
}

// Dropped counts the frames and records dropped as malformed so far.
func (s *Serial) Dropped() uint64 { return s.dropped.Load() }

// Close closes the stream; a blocked Receive returns ErrClosed.
func (s *Serial) Close() error {
	err := ErrClosed
	s.once.Do(func() {
		close(s.done)
		err = s.rw.Close()
	})
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
