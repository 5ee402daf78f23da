package board

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/gpio"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func TestBuiltinsValidAndRoundTrip(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != name {
				t.Errorf("Lookup(%q).Name = %q", name, p.Name)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(b)
			if err != nil {
				t.Fatalf("parsing own YAML: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(back, p) {
				t.Errorf("YAML round trip changed the profile:\n%+v\n%+v", p, back)
			}
		})
	}
	if _, err := Lookup(Default); err != nil {
		t.Errorf("default profile: %v", err)
	}
}

func TestRequiredProfiles(t *testing.T) {
	q, _ := Lookup("qemu")
	if q.Watchdog.Driver != "i6300esb" || q.Relay.Serial.Device != "/dev/ttyS1" || q.ISDN[0].Serial.Device != "/dev/ttyS2" {
		t.Errorf("qemu profile does not match the VM: %+v", q)
	}
	for _, m := range []string{"i6300esb", "virtio_net", "virtio_pci", "virtio_blk", "crc32c_generic", "ext4"} {
		if !strings.Contains(strings.Join(q.Modules, " "), m) {
			t.Errorf("qemu profile does not load %s", m)
		}
	}
	a, _ := Lookup("apu2")
	if len(a.NICs) != 3 || a.Relay.Driver != RelayGPIO || a.Tried {
		t.Errorf("apu2 profile: %+v", a)
	}
	s, _ := Lookup("sim")
	if s.Watchdog.Device != WatchdogSim || s.Relay.Driver != RelaySim {
		t.Errorf("sim profile simulates nothing: %+v", s)
	}
}

func TestLookupCopies(t *testing.T) {
	a, _ := Lookup("qemu")
	a.NICs[0].Name = "changed"
	a.Relay.Serial.Device = "changed"
	b, _ := Lookup("qemu")
	if b.NICs[0].Name == "changed" || b.Relay.Serial.Device == "changed" {
		t.Fatal("Lookup hands out shared profiles")
	}
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "apu2") {
		t.Errorf("Lookup of an unknown board = %v, want the list of boards", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(p *Profile)
		wantErr string
	}{
		{"no name", func(p *Profile) { p.Name = "" }, "no name"},
		{"NIC twice", func(p *Profile) { p.NICs[1].Name = p.NICs[0].Name }, "listed twice"},
		{"two LANs", func(p *Profile) { p.NICs[1].Role = RoleLAN }, "want one lan"},
		{"bad role", func(p *Profile) { p.NICs[1].Role = "dmz" }, "unknown role"},
		{"no NIC name", func(p *Profile) { p.NICs[0].Name = "" }, "has no name"},
		{"no watchdog", func(p *Profile) { p.Watchdog.Device = "" }, "no device"},
		{"relative watchdog", func(p *Profile) { p.Watchdog.Device = "watchdog" }, "neither a path"},
		{"zero timeout", func(p *Profile) { p.Watchdog.Timeout = 0 }, "not above zero"},
		{"sub-second real timeout", func(p *Profile) { p.Watchdog.Timeout = 1500 * time.Millisecond }, "whole seconds"},
		{"relay driver", func(p *Profile) { p.Relay.Driver = "kmtronic" }, "unknown driver"},
		{"numato no port", func(p *Profile) { p.Relay.Serial = nil }, "no serial port"},
		{"numato bad port", func(p *Profile) { p.Relay.Serial = &serial.Config{} }, "no device"},
		{"numato bad sense", func(p *Profile) { p.Relay.Sense = &gpio.Spec{Offset: 1} }, "numato relay sense"},
		{"numato number", func(p *Profile) { p.Relay.Number = 32 }, "outside 0-31"},
		{"gpio no coil", func(p *Profile) { p.Relay = Relay{Driver: RelayGPIO} }, "no coil"},
		{"gpio bad sense", func(p *Profile) {
			p.Relay = Relay{Driver: RelayGPIO, Coil: &gpio.Spec{Name: "C"}, Sense: &gpio.Spec{}}
		}, "sense"},
		{"sim no file", func(p *Profile) { p.Relay = Relay{Driver: RelaySim} }, "state_file"},
		{"negative settle", func(p *Profile) { p.Relay.Settle = -1 }, "negative settle"},
		{"span type", func(p *Profile) { p.ISDN[0].Type = "bri" }, "unknown type"},
		{"span twice", func(p *Profile) { p.ISDN = append(p.ISDN, p.ISDN[0]) }, "repeated name"},
		{"span port", func(p *Profile) { p.ISDN[0].Serial.Parity = "?" }, "parity"},
		{"module path", func(p *Profile) { p.Modules = append(p.Modules, "../evil") }, "kernel module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := QEMU()
			tt.change(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Watchdog.Timeout != 20*time.Second || p.Relay.Number != 2 || p.ISDN[0].Type != PRIE1 {
		t.Errorf("Load read %+v", p)
	}
	if _, err := Load("testdata/typo.yaml"); err == nil || !strings.Contains(err.Error(), "timout") {
		t.Errorf("Load of a profile with a typo = %v, want it named", err)
	}
	if _, err := Load("testdata/missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v", err)
	}
}

// FuzzParse: no input panics, and whatever parses survives a round trip.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/custom.yaml", "testdata/typo.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, name := range Names() {
		p, _ := Lookup(name)
		b, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", out, err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip changed %+v into %+v", p, back)
		}
	})
}
