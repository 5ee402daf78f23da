package board

import (
	"time"

	"github.com/twinpbx/twinpbx/hw/gpio"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/serial"
)

// Default is the profile of `twinpbx run` on a development machine.
const Default = "sim"

// builtin makes each built-in profile afresh, so no caller can change
// another's copy.
var builtin = map[string]func() Profile{
	"sim":  Sim,
	"qemu": QEMU,
	"apu2": APU2,
}

// Sim is the simulated board: no NICs of its own (it uses whatever
// addresses it is given), a simulated watchdog whose reset ends the process
// with watchdog.ExitCodeReset, a relay in a state file (twins share it by
// naming the same absolute path) and one BRI span on the exchange
// emulator. Data stays in the data folder.
func Sim() Profile {
	return Profile{
		Name:        "sim",
		Description: "Simulated board: everything simulated, data in a local folder",
		Tried:       true,
		Watchdog:    Watchdog{Device: WatchdogSim, Timeout: 10 * time.Second},
		Relay:       Relay{Driver: RelaySim, StateFile: "relay-state"},
		ISDN: []ISDNSpan{
			{Name: "bri0", Type: BRIPTMP, Serial: serial.Config{Device: "sim"}},
		},
	}
}

// QEMU is the virtual machine of the VM tests: an i6300esb watchdog, two
// virtio NICs, the Numato relay board simulator (cmd/numatosim) on ttyS1
// and the ISDN card's port on ttyS2. Tried in the twin VM test
// (image/vmtest TestTwin): the watchdog, both NICs, the relay board
// and the ISDN card, all on the host's simulators.
func QEMU() Profile {
	return Profile{
		Name:        "qemu",
		Description: "QEMU x86-64 machine: -device i6300esb, virtio-net x2, relay board and ISDN card on serial ports",
		Tried:       true,
		NICs: []NIC{
			{Name: "eth0", Role: RoleLAN, Driver: "virtio_net"},
			{Name: "eth1", Role: RoleCrossover, Driver: "virtio_net"},
		},
		Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: 10 * time.Second, Driver: "i6300esb"},
		Relay: Relay{
			Driver: RelayNumato,
			Serial: &serial.Config{Device: "/dev/ttyS1", Baud: relay.NumatoBaud},
			Number: 0,
		},
		ISDN: []ISDNSpan{
			{Name: "bri0", Type: BRIPTMP, Serial: serial.Config{Device: "/dev/ttyS2", Baud: 115200}},
		},
		// crc32c_generic before ext4: ext4 asks for crc32c through the
		// crypto API, which would need a modprobe the image does not have.
		Modules: []string{"virtio_pci", "virtio_net", "i6300esb", "virtio_blk", "crc32c_generic", "ext4"},
		Console: "ttyS0,115200",
	}
}

// APU2 is a PC Engines APU2-like appliance: three Intel i210 NICs, the
// SP5100 TCO watchdog of the AMD FCH, and the relay on two GPIO lines of
// the FCH (gpio-amd-fch, exposed by the pcengines-apuv2 platform driver).
// Not yet tried on hardware: the chip label and line offsets must be
// checked with gpioinfo on a real board.
func APU2() Profile {
	return Profile{
		Name:        "apu2",
		Description: "PC Engines APU2-like x86 appliance (not yet tried on hardware)",
		Tried:       false,
		NICs: []NIC{
			{Name: "enp1s0", Role: RoleLAN, Driver: "igb"},
			{Name: "enp2s0", Role: RoleCrossover, Driver: "igb"},
			{Name: "enp3s0", Role: RoleSpare, Driver: "igb"},
		},
		Watchdog: Watchdog{Device: "/dev/watchdog", Timeout: 30 * time.Second, Driver: "sp5100_tco"},
		Relay: Relay{
			Driver: RelayGPIO,
			Coil:   &gpio.Spec{Chip: "gpio-amd-fch", Offset: 4},
			Sense:  &gpio.Spec{Chip: "gpio-amd-fch", Offset: 5, ActiveLow: true},
			Settle: 100 * time.Millisecond,
		},
		ISDN: []ISDNSpan{
			{Name: "bri0", Type: BRIPTP, Serial: serial.Config{Device: "/dev/ttyUSB0", Baud: 115200}},
		},
		Modules: []string{"igb", "sp5100_tco", "gpio-amd-fch", "pcengines-apuv2", "cdc_acm"},
		Console: "ttyS0,115200",
	}
}
