package vmtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	pstn "github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/relay/numatosim"
)

// TwinRelay is the relay of the Numato board (the qemu board profile's
// relay 0) that switches the pair's PSTN line.
const TwinRelay = 0

// twinSide is each node's side of the relay: side A is the box with the
// lexically lower node name (docs/CLUSTER.md).
var twinSide = map[string]relay.Side{"a": relay.A, "b": relay.B}

// TwinLine is the host side of a twin pair's serial ports, as the boxes'
// hardware would be: one simulated Numato relay board that both
// machines' ttyS1 talk to (box a de-energises relay 0 for side A, box b
// energises it for side B), and one PSTN line, the ISDN exchange
// emulator, which the relay's position connects to one machine's ttyS2
// (its ISDN card) at a time. The other machine's card gets LOS when the
// relay leaves it and hears nothing until the relay comes back; what it
// sends meanwhile is lost, as on a cut line. Each switch starts a new
// exchange on the newly connected side, as a line that comes up anew.
type TwinLine struct {
	// Board is the relay board both machines drive.
	Board *numatosim.Board

	dir    string
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lns    []net.Listener

	mu      sync.Mutex
	ends    map[relay.Side]*lineEnd
	side    relay.Side
	x       *pstn.Exchange
	xStop   context.CancelFunc
	changed chan struct{}
}

// lineEnd is one machine's ISDN card port as the host sees it: the card
// protocol on its socket, and the inbox of the exchange that the relay
// connects to it now (nil while the relay gives the line to the twin).
type lineEnd struct {
	ser   *card.Serial
	inbox chan card.Record
}

// NewTwinLine listens on the machines' serial sockets in dir (see
// TwinLine.Serial) and switches the line by the relay's position until
// Close. Start the machines after it.
func NewTwinLine(dir string, log *slog.Logger) (*TwinLine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &TwinLine{Board: &numatosim.Board{}, dir: dir, log: log, cancel: cancel,
		ends: map[relay.Side]*lineEnd{}, side: relay.A, changed: make(chan struct{})}
	for _, node := range TwinNodes {
		rl, err := l.listen(twinSocket(dir, node, "relay"))
		if err != nil {
			return nil, errors.Join(err, l.Close())
		}
		il, err := l.listen(twinSocket(dir, node, "isdn"))
		if err != nil {
			return nil, errors.Join(err, l.Close())
		}
		side := twinSide[node]
		l.wg.Add(2)
		go func() { defer l.wg.Done(); l.serveRelay(ctx, rl, node) }()
		go func() { defer l.wg.Done(); l.serveCard(ctx, il, side) }()
	}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.follow(ctx) }()
	return l, nil
}

func (l *TwinLine) listen(path string) (net.Listener, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("twin line: %w", err)
	}
	l.lns = append(l.lns, ln)
	return ln, nil
}

func twinSocket(dir, node, port string) string {
	return filepath.Join(dir, node+"-"+port+".sock")
}

// Serial are the QEMU arguments that connect node's ttyS1 (the relay
// board) and ttyS2 (the ISDN card) to the line; the console must be the
// first -serial (ttyS0), as Args makes it.
func (l *TwinLine) Serial(node string) []string {
	return []string{"-serial", "unix:" + twinSocket(l.dir, node, "relay"), "-serial", "unix:" + twinSocket(l.dir, node, "isdn")}
}

// serveRelay serves the board on node's relay port, one machine at a
// time (a QEMU that restarts connects again).
func (l *TwinLine) serveRelay(ctx context.Context, ln net.Listener, node string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		if err := l.Board.Serve(ctx, c); err != nil && ctx.Err() == nil {
			l.log.Warn("relay board: serial line of "+node, "err", err)
		}
		stop()
		c.Close()
	}
}

// serveCard takes the machine's ISDN card port and passes what it sends
// to the exchange while the relay connects this side, and drops it
// otherwise.
func (l *TwinLine) serveCard(ctx context.Context, ln net.Listener, side relay.Side) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		end := &lineEnd{ser: card.NewSerial(c, l.log)}
		stop := context.AfterFunc(ctx, func() { end.ser.Close() })
		l.mu.Lock()
		l.ends[side] = end
		l.mu.Unlock()
		l.kick()
		for {
			r, err := end.ser.Receive(ctx)
			if err != nil {
				break
			}
			l.mu.Lock()
			inbox := end.inbox
			l.mu.Unlock()
			if inbox != nil {
				select {
				case inbox <- r:
				default: // the exchange is behind: lost, as on a noisy line
				}
			}
		}
		stop()
		end.ser.Close()
		l.mu.Lock()
		if l.ends[side] == end {
			delete(l.ends, side)
			if l.side == side {
				l.stopExchange()
			}
		}
		l.mu.Unlock()
	}
}

func (l *TwinLine) kick() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// follow moves the line to the side the relay selects, polling the board
// every 20 ms (a real relay switches in about as long).
func (l *TwinLine) follow(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		side := relay.A
		if l.Board.Relay(TwinRelay) {
			side = relay.B
		}
		l.mu.Lock()
		if side != l.side || (l.x == nil && l.ends[side] != nil) {
			l.switchTo(ctx, side)
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.stopExchange()
			l.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// switchTo gives the line to side; l.mu is held.
func (l *TwinLine) switchTo(ctx context.Context, side relay.Side) {
	if old := l.ends[l.side]; old != nil && l.side != side {
		_ = old.ser.Send(card.Record{Kind: card.Layer1, L1: card.L1{Alarms: card.LOS}})
	}
	l.stopExchange()
	if l.side != side {
		l.log.Info("relay switched: the PSTN line goes to side "+side.String(), "side", side.String())
	}
	l.side = side
	end := l.ends[side]
	if end == nil {
		return // that machine has not connected its card (yet)
	}
	end.inbox = make(chan card.Record, card.PipeDepth)
	x, err := pstn.New(sideCard{end: end, inbox: end.inbox}, pstn.Config{Type: isdn.BRIPointToMultipoint, Log: l.log})
	if err != nil {
		l.log.Error("twin line: starting the exchange", "err", err)
		return
	}
	xctx, stop := context.WithCancel(ctx)
	l.x, l.xStop = x, stop
	go func() {
		if err := x.Run(xctx); err != nil && xctx.Err() == nil {
			l.log.Warn("twin line: exchange stopped", "side", side.String(), "err", err)
		}
	}()
	close(l.changed)
	l.changed = make(chan struct{})
}

// stopExchange ends the running exchange; l.mu is held.
func (l *TwinLine) stopExchange() {
	if l.x == nil {
		return
	}
	l.xStop()
	if end := l.ends[l.side]; end != nil {
		end.inbox = nil
	}
	l.x, l.xStop = nil, nil
}

// sideCard is the card an exchange sees while the relay connects one
// side: records from that machine's inbox, records sent to its port.
// Closing it leaves the port open for the next switch.
type sideCard struct {
	end   *lineEnd
	inbox chan card.Record
}

func (c sideCard) Receive(ctx context.Context) (card.Record, error) {
	select {
	case r := <-c.inbox:
		return r, nil
	case <-ctx.Done():
		return card.Record{}, ctx.Err()
	}
}

func (c sideCard) Send(r card.Record) error { return c.end.ser.Send(r) }
func (c sideCard) Close() error             { return nil }

// Side is where the relay board has the line now, as the host reads
// the board.
func (l *TwinLine) Side() relay.Side {
	if l.Board.Relay(TwinRelay) {
		return relay.B
	}
	return relay.A
}

// NodeSide is node's side of the relay.
func NodeSide(node string) relay.Side { return twinSide[node] }

// Exchange waits until the line runs an exchange on side (the relay
// selects it and its machine's card is connected) and returns it.
func (l *TwinLine) Exchange(ctx context.Context, side relay.Side) (*pstn.Exchange, error) {
	for {
		l.mu.Lock()
		x, at, ch := l.x, l.side, l.changed
		l.mu.Unlock()
		if x != nil && at == side {
			return x, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the PSTN line on side %v (the relay is at %v): %w", side, l.Side(), ctx.Err())
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the board and the line and removes the sockets.
func (l *TwinLine) Close() error {
	l.cancel()
	var errs []error
	for _, ln := range l.lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	for _, e := range l.ends {
		e.ser.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return errors.Join(errs...)
}

// TwinISDNTrunk is the isdn trunk of a box on a TwinLine: the gateway of
// the board's span (the line the relay gives it), whose calls from the
// line ring ext. Without a TwinLine behind the machines, leave it out:
// the active's PSTN monitor would find the line down and hand over.
func TwinISDNTrunk(ext string) config.TrunkLine {
	return config.TrunkLine{Name: "isdn", Type: "isdn", Host: config.DefaultISDNGateway, Extension: ext}
}
