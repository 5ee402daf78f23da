package update

import "testing"

func TestSlotFromCmdline(t *testing.T) {
	tests := []struct {
		cmdline string
		want    Slot
	}{
		{"console=ttyS0 twinpbx.slot=A twinpbx.trial=1", SlotA},
		{"twinpbx.slot=b", SlotB},
		{"twinpbx.slot=C", NoSlot},
		{"twinpbx.slot=", NoSlot},
		{"console=ttyS0", NoSlot},
		{"", NoSlot},
	}
	for _, tt := range tests {
		if got := SlotFromCmdline(tt.cmdline); got != tt.want {
			t.Errorf("SlotFromCmdline(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}
