package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
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
// (its ISDN card) at a time. A card gets layer 1 up when the relay
// connects it and LOS when the relay leaves it; while it is left, what
// either end sends is lost, as on a cut line. The exchange keeps what it
// knows of each box (its TEI, its data link) across the switches, as an
// exchange does of the terminals on its line: one emulator per side,
// only the connected one hearing and heard.
type TwinLine struct {
	// Board is the relay board both machines drive.
	Board *numatosim.Board

	dir    string
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lns    []net.Listener

	mu       sync.Mutex
	selected map[string]relay.Side // the side each node last switched relay 0 to
	ends     map[relay.Side]*lineEnd
	side     relay.Side // where the line is connected
	switches int        // how often the relay moved
	changed  chan struct{}
}

// lineEnd is one machine's ISDN card port as the host sees it: the card
// protocol on its socket and that side's exchange, which hears and is
// heard only while attached (TwinLine.mu).
type lineEnd struct {
	ser      *card.Serial
	x        *pstn.Exchange
	inbox    chan card.Record
	attached bool
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
		ends: map[relay.Side]*lineEnd{}, selected: map[string]relay.Side{}, side: relay.A, changed: make(chan struct{})}
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
		if err := l.Board.Serve(ctx, &commandTap{Conn: c, line: l, node: node}); err != nil && ctx.Err() == nil {
			l.log.Warn("relay board: serial line of "+node, "err", err)
		}
		stop()
		c.Close()
	}
}

// commandTap notes the relay commands a machine sends to the board, so
// that a test can tell which box switched the relay (side A is also
// where it rests untouched).
type commandTap struct {
	net.Conn
	line    *TwinLine
	node    string
	pending []byte
}

func (c *commandTap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.pending = append(c.pending, p[:n]...)
	for {
		i := bytes.IndexByte(c.pending, '\r')
		if i < 0 {
			break
		}
		cmd := strings.TrimSpace(string(c.pending[:i]))
		c.pending = c.pending[i+1:]
		var side relay.Side
		switch cmd {
		case fmt.Sprintf("relay off %d", TwinRelay):
			side = relay.A
		case fmt.Sprintf("relay on %d", TwinRelay):
			side = relay.B
		default:
			continue
		}
		c.line.mu.Lock()
		c.line.selected[c.node] = side
		c.line.mu.Unlock()
		c.line.log.Info("relay board: "+cmd, "from", c.node)
	}
	if len(c.pending) > 256 {
		c.pending = c.pending[len(c.pending)-256:]
	}
	return n, err
}

// Selected is the side node last switched the relay to, and whether it
// has switched it at all.
func (l *TwinLine) Selected(node string) (relay.Side, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.selected[node]
	return s, ok
}

// serveCard takes the machine's ISDN card port and runs that side's
// exchange on it, which hears the machine only while the relay connects
// this side.
func (l *TwinLine) serveCard(ctx context.Context, ln net.Listener, side relay.Side) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		end := &lineEnd{ser: card.NewSerial(c, l.log), inbox: make(chan card.Record, card.PipeDepth)}
		x, err := pstn.New(sideCard{l: l, end: end}, pstn.Config{Type: isdn.BRIPointToMultipoint, Log: l.log})
		if err != nil {
			l.log.Error("twin line: starting the exchange", "side", side.String(), "err", err)
			c.Close()
			continue
		}
		end.x = x
		cctx, stopX := context.WithCancel(ctx)
		go func() {
			if err := x.Run(cctx); err != nil && cctx.Err() == nil {
				l.log.Warn("twin line: exchange stopped", "side", side.String(), "err", err)
			}
		}()
		l.mu.Lock()
		l.ends[side] = end
		l.mu.Unlock()
		for {
			r, err := end.ser.Receive(cctx)
			if err != nil {
				break
			}
			l.mu.Lock()
			attached := end.attached
			l.mu.Unlock()
			if attached {
				select {
				case end.inbox <- r:
				default: // the exchange is behind: lost, as on a noisy line
				}
			}
		}
		stopX()
		end.ser.Close()
		l.mu.Lock()
		if l.ends[side] == end {
			delete(l.ends, side)
		}
		l.mu.Unlock()
	}
}

// follow moves the line to the side the relay selects, polling the board
// every 20 ms (a real relay switches in about as long).
func (l *TwinLine) follow(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		side := l.Side()
		l.mu.Lock()
		if side != l.side {
			l.log.Info("relay switched: the PSTN line goes to side "+side.String(), "side", side.String())
			if old := l.ends[l.side]; old != nil && old.attached {
				_ = old.ser.Send(card.Record{Kind: card.Layer1, L1: card.L1{Alarms: card.LOS}})
				old.attached = false
			}
			l.side = side
			l.switches++
		}
		if end := l.ends[side]; end != nil && !end.attached {
			end.attached = true
			_ = end.ser.Send(card.Record{Kind: card.Layer1, L1: card.L1{Up: true}})
			close(l.changed)
			l.changed = make(chan struct{})
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sideCard is the card a side's exchange sees: records from its
// machine while attached, records to it while attached (lost
// otherwise). Closing it leaves the port open.
type sideCard struct {
	l   *TwinLine
	end *lineEnd
}

func (c sideCard) Receive(ctx context.Context) (card.Record, error) {
	select {
	case r := <-c.end.inbox:
		return r, nil
	case <-ctx.Done():
		return card.Record{}, ctx.Err()
	}
}

// Send holds the line's lock while it writes, so that nothing an
// exchange sends slips out after the relay has left its side.
func (c sideCard) Send(r card.Record) error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if !c.end.attached {
		return nil
	}
	return c.end.ser.Send(r)
}

func (c sideCard) Close() error { return nil }

// Side is where the relay board has the line now, as the host reads
// the board.
func (l *TwinLine) Side() relay.Side {
	if l.Board.Relay(TwinRelay) {
		return relay.B
	}
	return relay.A
}

// Switches is how often the relay has moved the line so far.
func (l *TwinLine) Switches() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.switches
}

// NodeSide is node's side of the relay.
func NodeSide(node string) relay.Side { return twinSide[node] }

// Exchange waits until the relay connects the line to side and that
// side's machine has its card connected, and returns that side's
// exchange.
func (l *TwinLine) Exchange(ctx context.Context, side relay.Side) (*pstn.Exchange, error) {
	for {
		l.mu.Lock()
		end, ch := l.ends[side], l.changed
		ok := end != nil && end.attached && l.side == side
		l.mu.Unlock()
		if ok {
			return end.x, nil
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
