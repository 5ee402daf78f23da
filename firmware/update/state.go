package update

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Slot names a boot slot: A or B. The zero Slot is none.
type Slot byte

// The slots.
const (
	NoSlot Slot = 0
	SlotA  Slot = 'A'
	SlotB  Slot = 'B'
)

func (s Slot) String() string {
	switch s {
	case SlotA, SlotB:
		return string(rune(s))
	}
	return "none"
}

// Other is the slot that is not s.
func (s Slot) Other() Slot {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// ParseSlot reads "A" or "B" (either case).
func ParseSlot(s string) (Slot, error) {
	switch s {
	case "A", "a":
		return SlotA, nil
	case "B", "b":
		return SlotB, nil
	}
	return NoSlot, fmt.Errorf("slot %q: want A or B", s)
}

func (s Slot) index() int {
	if s == SlotB {
		return 1
	}
	return 0
}

// TrialTries is how many times a new slot is booted before it must have
// committed: once. A trial that does not commit (a crash, a kernel
// panic, a watchdog reset, no health within the deadline) boots the old
// slot next.
const TrialTries = 1

// State is the boot state record: which slot is good, which is on trial.
type State struct {
	// Seq grows with every write; of the record's two copies the valid
	// one with the higher Seq counts.
	Seq uint64
	// Active is the committed slot: the one booted when no trial is due.
	Active Slot
	// Trial is a slot written by an update and not yet committed;
	// TriesLeft is how many boots it still gets.
	Trial     Slot
	TriesLeft uint8
	// Versions are the bundle versions in slot A and B ("" empty).
	Versions [2]string
	// Failed is the version of the last trial that did not commit.
	Failed string
}

// Version is the bundle version in slot s.
func (s State) Version(slot Slot) string { return s.Versions[slot.index()] }

// Fresh is the state of a box flashed with version in slot A.
func Fresh(version string) State {
	return State{Active: SlotA, Versions: [2]string{version, ""}}
}

// Decision is what the boot stage does.
type Decision struct {
	// Slot is booted.
	Slot Slot
	// Trial is set when Slot boots on trial: it must commit or the next
	// boot falls back.
	Trial bool
	// FellBack is set when a trial ran out of tries and this boot goes
	// back to the active slot; FailedSlot is the slot that failed.
	FellBack   bool
	FailedSlot Slot
}

// Choose decides which slot boots and returns the state to write before
// booting it (a trial's tries are counted before it runs, so a crash or
// reset during the trial cannot boot it again).
func Choose(s State) (Decision, State) {
	if s.Active != SlotA && s.Active != SlotB {
		s.Active = SlotA
	}
	if s.Trial == s.Active {
		s.Trial, s.TriesLeft = NoSlot, 0
	}
	if s.Trial != NoSlot {
		if s.TriesLeft > 0 {
			s.TriesLeft--
			return Decision{Slot: s.Trial, Trial: true}, s
		}
		failed := s.Trial
		s.Failed = s.Version(failed)
		s.Trial = NoSlot
		return Decision{Slot: s.Active, FellBack: true, FailedSlot: failed}, s
	}
	return Decision{Slot: s.Active}, s
}

// BeginWrite is the state to write before slot's partition is
// overwritten: the slot is no longer bootable. It refuses the active
// slot and a pending trial (commit or fall back first).
func (s State) BeginWrite(slot Slot) (State, error) {
	if slot != SlotA && slot != SlotB {
		return s, fmt.Errorf("slot %v: want A or B", slot)
	}
	if slot == s.Active {
		return s, fmt.Errorf("slot %v is the active slot: updates write the other one", slot)
	}
	if s.Trial != NoSlot {
		return s, fmt.Errorf("slot %v is on trial and not committed yet: let it commit or fall back first", s.Trial)
	}
	s.Versions[slot.index()] = ""
	return s, nil
}

// StartTrial is the state after version was written and verified in
// slot: the next boot tries it.
func (s State) StartTrial(slot Slot, version string) (State, error) {
	if slot != SlotA && slot != SlotB || slot == s.Active {
		return s, fmt.Errorf("slot %v cannot go on trial (the active slot is %v)", slot, s.Active)
	}
	if err := checkVersion(version); err != nil {
		return s, err
	}
	s.Versions[slot.index()] = version
	s.Trial, s.TriesLeft = slot, TrialTries
	return s, nil
}

// ErrNotTrial means the booted slot has nothing to commit.
var ErrNotTrial = errors.New("nothing to commit")

// Commit is the state after booted reported healthy: a trial slot
// becomes the active one. Booting the active slot commits nothing
// (ErrNotTrial, harmless); any other slot is an error.
func (s State) Commit(booted Slot) (State, error) {
	switch {
	case booted == s.Trial && booted != NoSlot:
		s.Active, s.Trial, s.TriesLeft, s.Failed = booted, NoSlot, 0, ""
		return s, nil
	case booted == s.Active:
		return s, ErrNotTrial
	}
	return s, fmt.Errorf("slot %v booted but is neither active (%v) nor on trial (%v)", booted, s.Active, s.Trial)
}

// The record: two copies, each in its own RecordSize block at offsets 0
// and RecordSize of the state partition, written alternately so that a
// torn write leaves the other intact.
const (
	RecordSize  = 4096
	recordMagic = "TWPBXBS1"
	maxVersion  = 64
	// StateSize is the room the record needs on its partition.
	StateSize = 2 * RecordSize
)

// Marshal encodes s as one record block.
func (s State) Marshal() ([]byte, error) {
	for _, v := range []string{s.Versions[0], s.Versions[1], s.Failed} {
		if len(v) > maxVersion {
			return nil, fmt.Errorf("boot state: version %q too long", v)
		}
	}
	b := make([]byte, 0, RecordSize)
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint64(b, s.Seq)
	b = append(b, byte(s.Active), byte(s.Trial), s.TriesLeft)
	for _, v := range []string{s.Versions[0], s.Versions[1], s.Failed} {
		b = append(b, byte(len(v)))
		b = append(b, v...)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return append(b, make([]byte, RecordSize-len(b))...), nil
}

// UnmarshalState decodes one record block.
func UnmarshalState(b []byte) (State, error) {
	var s State
	if len(b) < len(recordMagic)+8+3 || string(b[:8]) != recordMagic {
		return s, errors.New("boot state: no record")
	}
	r := bytes.NewReader(b[8:])
	var fixed struct {
		Seq                      uint64
		Active, Trial, TriesLeft uint8
	}
	if err := binary.Read(r, binary.BigEndian, &fixed); err != nil {
		return s, fmt.Errorf("boot state: %w", err)
	}
	s.Seq, s.Active, s.Trial, s.TriesLeft = fixed.Seq, Slot(fixed.Active), Slot(fixed.Trial), fixed.TriesLeft
	var vs [3]string
	for i := range vs {
		n, err := r.ReadByte()
		if err != nil || int(n) > maxVersion {
			return s, errors.New("boot state: bad version field")
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return s, errors.New("boot state: bad version field")
		}
		vs[i] = string(v)
	}
	end := len(b) - r.Len()
	if len(b) < end+4 || binary.BigEndian.Uint32(b[end:]) != crc32.ChecksumIEEE(b[:end]) {
		return s, errors.New("boot state: checksum mismatch")
	}
	s.Versions, s.Failed = [2]string{vs[0], vs[1]}, vs[2]
	if s.Active != SlotA && s.Active != SlotB || (s.Trial != NoSlot && s.Trial != SlotA && s.Trial != SlotB) {
		return s, errors.New("boot state: bad slot")
	}
	return s, nil
}

// ReadState reads the record from the state partition: the valid copy
// with the higher sequence number. With no valid copy it returns an
// error wrapping ErrNoState.
func ReadState(r io.ReaderAt) (State, error) {
	var best State
	found := false
	var errs []error
	for i := range int64(2) {
		b := make([]byte, RecordSize)
		if _, err := r.ReadAt(b, i*RecordSize); err != nil {
			errs = append(errs, fmt.Errorf("reading boot state copy %d: %w", i, err))
			continue
		}
		s, err := UnmarshalState(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d: %w", i, err))
			continue
		}
		if !found || s.Seq > best.Seq {
			best, found = s, true
		}
	}
	if !found {
		return State{}, fmt.Errorf("%w: %w", ErrNoState, errors.Join(errs...))
	}
	return best, nil
}

// ErrNoState means neither copy of the record is valid.
var ErrNoState = errors.New("no valid boot state record")

// Syncer is a WriterAt that can flush to stable storage (an *os.File).
type Syncer interface {
	io.WriterAt
	Sync() error
}

// WriteState writes s as the next record (Seq = prev.Seq+1) over the
// copy prev did not come from, and syncs it. It returns what it wrote.
func WriteState(w Syncer, prev, s State) (State, error) {
	s.Seq = prev.Seq + 1
	b, err := s.Marshal()
	if err != nil {
		return prev, err
	}
	if _, err := w.WriteAt(b, int64(s.Seq%2)*RecordSize); err != nil {
		return prev, fmt.Errorf("writing the boot state: %w", err)
	}
	if err := w.Sync(); err != nil {
		return prev, fmt.Errorf("syncing the boot state: %w", err)
	}
	return s, nil
}
