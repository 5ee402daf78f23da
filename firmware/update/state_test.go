package update

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestChoose(t *testing.T) {
	tests := []struct {
		name string
		in   State
		want Decision
		next State
	}{
		{"fresh", Fresh("v1"), Decision{Slot: SlotA}, Fresh("v1")},
		{"zero state boots A", State{}, Decision{Slot: SlotA}, State{Active: SlotA}},
		{"active B", State{Active: SlotB}, Decision{Slot: SlotB}, State{Active: SlotB}},
		{"trial due", State{Active: SlotA, Trial: SlotB, TriesLeft: 1, Versions: [2]string{"v1", "v2"}},
			Decision{Slot: SlotB, Trial: true},
			State{Active: SlotA, Trial: SlotB, TriesLeft: 0, Versions: [2]string{"v1", "v2"}}},
		{"trial out of tries falls back", State{Active: SlotA, Trial: SlotB, Versions: [2]string{"v1", "v2"}},
			Decision{Slot: SlotA, FellBack: true, FailedSlot: SlotB},
			State{Active: SlotA, Versions: [2]string{"v1", "v2"}, Failed: "v2"}},
		{"trial of the active slot is dropped", State{Active: SlotB, Trial: SlotB, TriesLeft: 1},
			Decision{Slot: SlotB}, State{Active: SlotB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, next := Choose(tt.in)
			if d != tt.want || next != tt.next {
				t.Fatalf("Choose(%+v) = %+v, %+v; want %+v, %+v", tt.in, d, next, tt.want, tt.next)
			}
		})
	}
}

// TestUpdateCycle runs the state machine through a good update and a
// broken one, boot by boot.
func TestUpdateCycle(t *testing.T) {
	s := Fresh("v1")
	boot := func(want Decision) {
		t.Helper()
		var d Decision
		d, s = Choose(s)
		if d != want {
			t.Fatalf("boot: %+v, want %+v (state %+v)", d, want, s)
		}
	}
	must := func(n State, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		s = n
	}
	boot(Decision{Slot: SlotA})
	must(s.BeginWrite(SlotB))
	must(s.StartTrial(SlotB, "v2"))
	boot(Decision{Slot: SlotB, Trial: true})
	must(s.Commit(SlotB))
	boot(Decision{Slot: SlotB})
	boot(Decision{Slot: SlotB})
	if s.Active != SlotB || s.Version(SlotB) != "v2" {
		t.Fatalf("after the good update: %+v", s)
	}

	// A broken update: the trial boot never commits (crash, reset).
	must(s.BeginWrite(SlotA))
	if s.Version(SlotA) != "" {
		t.Fatalf("slot being written still has a version: %+v", s)
	}
	must(s.StartTrial(SlotA, "v3"))
	boot(Decision{Slot: SlotA, Trial: true})
	boot(Decision{Slot: SlotB, FellBack: true, FailedSlot: SlotA})
	boot(Decision{Slot: SlotB})
	if s.Active != SlotB || s.Failed != "v3" || s.Trial != NoSlot {
		t.Fatalf("after the broken update: %+v", s)
	}
	// A late commit from the failed slot changes nothing.
	if _, err := s.Commit(SlotA); err == nil {
		t.Fatal("commit of a slot that fell back: no error")
	}
	if _, err := s.Commit(SlotB); !errors.Is(err, ErrNotTrial) {
		t.Fatalf("commit of the active slot: %v, want ErrNotTrial", err)
	}
}

func TestStateRefusals(t *testing.T) {
	trial := State{Active: SlotA, Trial: SlotB, TriesLeft: 1}
	tests := []struct {
		name string
		do   func() (State, error)
	}{
		{"write the active slot", func() (State, error) { return Fresh("v1").BeginWrite(SlotA) }},
		{"write no slot", func() (State, error) { return Fresh("v1").BeginWrite(NoSlot) }},
		{"write during a trial", func() (State, error) { return trial.BeginWrite(SlotB) }},
		{"trial of the active slot", func() (State, error) { return Fresh("v1").StartTrial(SlotA, "v2") }},
		{"trial without version", func() (State, error) { return Fresh("v1").StartTrial(SlotB, "") }},
		{"trial with a bad version", func() (State, error) { return Fresh("v1").StartTrial(SlotB, "a b") }},
		{"commit of no slot", func() (State, error) { return Fresh("v1").Commit(NoSlot) }},
	}
	for _, tt := range tests {
		if _, err := tt.do(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(StateSize); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(f); !errors.Is(err, ErrNoState) {
		t.Fatalf("empty partition: %v, want ErrNoState", err)
	}
	s1, err := WriteState(f, State{}, Fresh("v1"))
	if err != nil {
		t.Fatal(err)
	}
	want := State{Active: SlotA, Trial: SlotB, TriesLeft: 1, Versions: [2]string{"v1", "v2-with-a-long-name"}, Failed: "v0"}
	s2, err := WriteState(f, s1, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(f)
	want.Seq = 2
	if err != nil || got != want || s2 != want {
		t.Fatalf("ReadState = %+v, %v; want %+v", got, err, want)
	}
	// A torn write of the newest copy leaves the older one.
	if _, err := f.WriteAt([]byte("XX"), int64(s2.Seq%2)*RecordSize+20); err != nil {
		t.Fatal(err)
	}
	got, err = ReadState(f)
	if err != nil || got != s1 {
		t.Fatalf("after a torn write: %+v, %v; want %+v", got, err, s1)
	}
	if _, err := (State{Versions: [2]string{string(make([]byte, 65))}}).Marshal(); err == nil {
		t.Error("a version too long for the record: no error")
	}
}

func TestUnmarshalStateRefuses(t *testing.T) {
	good, err := Fresh("v1").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] = 'x'; return b }},
		{"checksum", func(b []byte) []byte { b[17] ^= 1; return b }},
		{"short", func(b []byte) []byte { return b[:12] }},
		{"bad slot", func(b []byte) []byte { b[16] = 'C'; return b }},
		{"version length", func(b []byte) []byte { b[19] = 200; return b }},
	} {
		if _, err := UnmarshalState(tt.change(append([]byte{}, good...))); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if _, err := UnmarshalState(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzUnmarshalState(f *testing.F) {
	for _, s := range []State{Fresh("v1"), {Seq: 9, Active: SlotB, Trial: SlotA, TriesLeft: 1, Versions: [2]string{"a", "b"}, Failed: "c"}} {
		b, _ := s.Marshal()
		f.Add(b)
	}
	f.Add([]byte(recordMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalState(b)
		if err != nil {
			return
		}
		// What decodes encodes again to the same state.
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", s, err)
		}
		s2, err := UnmarshalState(again)
		if err != nil || s2 != s {
			t.Fatalf("round trip %+v → %+v, %v", s, s2, err)
		}
		Choose(s)
	})
}
