package board

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/creack/pty"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	hwgpio "github.com/twinpbx/twinpbx/hw/gpio"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/relay/numatosim"
	"github.com/twinpbx/twinpbx/hw/serial"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openT(t *testing.T, p Profile, dir string, opts Options) (*Devices, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	d, err := Open(context.Background(), p, dir, opts)
	if d != nil {
		t.Cleanup(func() {
			if d.Watchdog != nil {
				_ = d.Watchdog.Close()
			}
			_ = d.Close()
		})
	}
	return d, err
}

func wantStates(t *testing.T, d *Devices, want ...State) {
	t.Helper()
	if len(d.Status) != len(want) {
		t.Fatalf("status %+v, want %v", d.Status, want)
	}
	for i, st := range d.Status {
		if st.State != want[i] {
			t.Errorf("%s (%s) %v (%v), want %v", st.Device, st.Driver, st.State, st.Err, want[i])
		}
	}
}

// TestOpenSimTwins opens the simulated board twice, as two twins do, with
// their own data folders and one shared relay.
func TestOpenSimTwins(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "relay")
	var twins []*Devices
	for range 2 {
		p := Sim()
		p.Relay.StateFile = shared
		d, err := openT(t, p, t.TempDir(), Options{OnWatchdogReset: func() {}})
		if err != nil {
			t.Fatal(err)
		}
		wantStates(t, d, Loaded, Loaded)
		if d.Watchdog.Identity() != "sim" || d.Watchdog.Timeout() != 10*time.Second {
			t.Errorf("watchdog %s %v", d.Watchdog.Identity(), d.Watchdog.Timeout())
		}
		twins = append(twins, d)
	}
	ctx := context.Background()
	if err := twins[1].Relay.Select(ctx, relay.B); err != nil {
		t.Fatal(err)
	}
	if side, sensed, err := twins[0].Relay.Position(ctx); side != relay.B || !sensed || err != nil {
		t.Fatalf("twin A sees %v, %v, %v; want B, sensed", side, sensed, err)
	}
}

func TestOpenSimRelativeState(t *testing.T) {
	dir := t.TempDir()
	d, err := openT(t, Sim(), dir, Options{OnWatchdogReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := d.Relay.(*relay.Shared)
	if !ok || s.Path() != filepath.Join(dir, "relay-state") {
		t.Fatalf("sim relay %T %v, want a shared relay in the data folder", d.Relay, d.Relay)
	}
	// A second node on the same data folder cannot take the watchdog.
	_, err = openT(t, Sim(), dir, Options{OnWatchdogReset: func() {}})
	if err == nil {
		t.Fatal("two nodes opened one data folder's watchdog")
	}
}

func TestOpenGPIORelay(t *testing.T) {
	coil := &gpiotest.Pin{N: "COIL", L: gpio.High}
	sense := &gpiotest.Pin{N: "SENSE", L: gpio.High} // active-low: reads A
	p := APU2()
	p.Watchdog = Watchdog{Device: WatchdogSim, Timeout: time.Minute}
	p.Relay.Coil = &hwgpio.Spec{Name: "COIL"}
	p.Relay.Sense = &hwgpio.Spec{Name: "SENSE", ActiveLow: true}
	d, err := openT(t, p, t.TempDir(), Options{
		OnWatchdogReset: func() {},
		GPIO:            hwgpio.Pins{"COIL": coil, "SENSE": sense},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, d, Loaded, Loaded)
	if coil.Read() != gpio.Low {
		t.Error("opening the board left the coil energised")
	}
	if side, sensed, _ := d.Relay.Position(context.Background()); side != relay.A || !sensed {
		t.Errorf("Position() = %v, %v; want A, sensed", side, sensed)
	}
	// Nothing moves the sense line: the relay must be reported stuck.
	if err := d.Relay.Select(context.Background(), relay.B); !errors.Is(err, relay.ErrNotFollowing) {
		t.Errorf("Select(B) with a dead sense line = %v", err)
	}
}

func TestOpenNumatoRelay(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	board := &numatosim.Board{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = board.Serve(ctx, ptmx) }()
	t.Cleanup(func() { cancel(); _ = tty.Close(); _ = ptmx.Close(); <-done })

	p := QEMU()
	p.Watchdog = Watchdog{Device: WatchdogSim, Timeout: time.Minute}
	p.Relay.Serial = &serial.Config{Device: tty.Name()}
	p.Relay.Number = 5
	d, err := openT(t, p, t.TempDir(), Options{OnWatchdogReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, d, Loaded, Loaded)
	if err := d.Relay.Select(context.Background(), relay.B); err != nil {
		t.Fatal(err)
	}
	if !board.Relay(5) {
		t.Error("board relay 5 not energised")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// The same board with a sense line on a second pole, which here
	// never moves: the board obeys, the contacts do not.
	p.Relay.Sense = &hwgpio.Spec{Name: "SENSE"}
	sense := &gpiotest.Pin{N: "SENSE"}
	d, err = openT(t, p, t.TempDir(), Options{OnWatchdogReset: func() {}, GPIO: hwgpio.Pins{"SENSE": sense}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Relay.Select(context.Background(), relay.B); !errors.Is(err, relay.ErrNotFollowing) {
		t.Fatalf("Select(B) with contacts that stay on A = %v", err)
	}
	if side, sensed, _ := d.Relay.Position(context.Background()); side != relay.A || !sensed {
		t.Errorf("Position() = %v, %v; want the contacts' A, sensed", side, sensed)
	}
}

// TestOpenMissingHardware opens the QEMU profile where its devices are
// absent: each failure is reported, Open says so, and nothing is armed.
func TestOpenMissingHardware(t *testing.T) {
	dir := t.TempDir()
	p := QEMU()
	p.Watchdog.Device = filepath.Join(dir, "watchdog") // never the host's
	p.Relay.Serial.Device = filepath.Join(dir, "ttyS1")
	d, err := openT(t, p, dir, Options{})
	if err == nil {
		t.Fatal("Open succeeded without devices")
	}
	wantStates(t, d, Failed, Failed)
	if d.Watchdog != nil || d.Relay != nil {
		t.Error("failed devices were handed out")
	}
}

func TestOpenSkipsNoRelay(t *testing.T) {
	p := Sim()
	p.Relay = Relay{Driver: RelayNone}
	d, err := openT(t, p, t.TempDir(), Options{OnWatchdogReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, d, Loaded, Skipped)
	if d.Relay != nil {
		t.Error("a skipped relay was handed out")
	}
}

func TestOpenInvalid(t *testing.T) {
	if d, err := Open(context.Background(), Profile{}, t.TempDir(), Options{}); err == nil || d != nil {
		t.Fatalf("Open of an empty profile = %v, %v", d, err)
	}
}
