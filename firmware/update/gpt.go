package update

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// The box's disk: a GPT with four partitions, found by their names,
// and an EFI system partition for the boot stage on real boards.
const (
	PartESP   = "twinpbx-esp"   // EFI system partition: the boot stage (FAT)
	PartState = "twinpbx-state" // the boot state record (raw)
	PartA     = "twinpbx-a"     // slot A: a bundle, raw
	PartB     = "twinpbx-b"     // slot B: a bundle, raw
	PartData  = "twinpbx-data"  // the data partition (ext4)
)

// SlotPart is the partition name of slot s.
func SlotPart(s Slot) string {
	if s == SlotB {
		return PartB
	}
	return PartA
}

// SectorSize is the logical sector size the GPT is written for.
const SectorSize = 512

// GUID is a GPT GUID as stored on disk (mixed endian).
type GUID [16]byte

// ParseGUID reads the textual form 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if len(s) != 36 || err != nil || len(raw) != 16 {
		return g, fmt.Errorf("GUID %q", s)
	}
	// The first three fields are little endian on disk.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// Partition type GUIDs.
var (
	TypeLinuxData     = mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	TypeLinuxReserved = mustGUID("8DA63339-0007-60C0-C436-083AC8230908")
	TypeEFISystem     = mustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
)

// Partition is one GPT entry; Start and Size are in bytes.
type Partition struct {
	Name  string
	Type  GUID
	Start int64
	Size  int64
}

// Find returns the partition named name.
func Find(parts []Partition, name string) (Partition, bool) {
	for _, p := range parts {
		if p.Name == name {
			return p, true
		}
	}
	return Partition{}, false
}

const (
	mib        = 1 << 20
	numEntries = 128
	entrySize  = 128
	entriesLen = numEntries * entrySize // 32 sectors
)

// Layout is the box's partitions: an EFI system partition of espSize
// (none when 0), the state record, two slots of slotSize and the data
// partition of dataSize, aligned to 1 MiB. It returns them and the
// disk's size (with room for the backup GPT).
func Layout(espSize, slotSize, dataSize int64) ([]Partition, int64) {
	round := func(n int64) int64 { return (n + mib - 1) / mib * mib }
	var parts []Partition
	off := int64(mib)
	all := []Partition{{Name: PartESP, Type: TypeEFISystem, Size: round(espSize)}}
	if espSize == 0 {
		all = nil
	}
	for _, p := range append(all, []Partition{
		{Name: PartState, Type: TypeLinuxReserved, Size: mib},
		{Name: PartA, Type: TypeLinuxReserved, Size: round(slotSize)},
		{Name: PartB, Type: TypeLinuxReserved, Size: round(slotSize)},
		{Name: PartData, Type: TypeLinuxData, Size: round(dataSize)},
	}...) {
		p.Start = off
		parts = append(parts, p)
		off += p.Size
	}
	return parts, off + mib
}

// WriteGPT writes a protective MBR and the primary and backup GPT for a
// disk of diskSize bytes holding parts. The GUIDs are derived from seed
// and the names, so the same layout gives the same bytes.
func WriteGPT(w io.WriterAt, diskSize int64, parts []Partition, seed string) error {
	sectors := diskSize / SectorSize
	lastLBA := sectors - 1
	firstUsable, lastUsable := int64(2+entriesLen/SectorSize), lastLBA-1-entriesLen/SectorSize
	if len(parts) > numEntries {
		return fmt.Errorf("GPT: %d partitions, at most %d", len(parts), numEntries)
	}
	entries := make([]byte, entriesLen)
	for i, p := range parts {
		if p.Start%SectorSize != 0 || p.Size%SectorSize != 0 || p.Size <= 0 {
			return fmt.Errorf("GPT: partition %s not sector aligned", p.Name)
		}
		first, last := p.Start/SectorSize, (p.Start+p.Size)/SectorSize-1
		if first < firstUsable || last > lastUsable {
			return fmt.Errorf("GPT: partition %s outside the usable sectors %d-%d", p.Name, firstUsable, lastUsable)
		}
		name := utf16.Encode([]rune(p.Name))
		if len(name) > 36 {
			return fmt.Errorf("GPT: partition name %q too long", p.Name)
		}
		e := entries[i*entrySize:]
		copy(e[0:16], p.Type[:])
		copy(e[16:32], derivedGUID(seed, "part "+p.Name))
		binary.LittleEndian.PutUint64(e[32:], uint64(first))
		binary.LittleEndian.PutUint64(e[40:], uint64(last))
		for j, c := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	diskGUID := derivedGUID(seed, "disk")
	header := func(current, backup, entriesLBA int64) []byte {
		h := make([]byte, SectorSize)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(current))
		binary.LittleEndian.PutUint64(h[32:], uint64(backup))
		binary.LittleEndian.PutUint64(h[40:], uint64(firstUsable))
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable))
		copy(h[56:72], diskGUID)
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], numEntries)
		binary.LittleEndian.PutUint32(h[84:], entrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, SectorSize)
	pe := mbr[446:]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00
	pe[4] = 0xEE
	pe[5], pe[6], pe[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA
	for _, wr := range []struct {
		lba int64
		b   []byte
	}{
		{0, mbr},
		{1, header(1, lastLBA, 2)},
		{2, entries},
		{lastLBA - entriesLen/SectorSize, entries},
		{lastLBA, header(lastLBA, 1, lastLBA-entriesLen/SectorSize)},
	} {
		if _, err := w.WriteAt(wr.b, wr.lba*SectorSize); err != nil {
			return fmt.Errorf("writing the GPT: %w", err)
		}
	}
	return nil
}

func derivedGUID(seed, what string) []byte {
	h := sha256.Sum256([]byte("twinpbx gpt\x00" + seed + "\x00" + what))
	g := h[:16]
	g[7] = g[7]&0x0f | 0x40 // version 4 (byte 7 holds the high byte of the third field)
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}

// ErrNoGPT means the disk has no valid primary GPT.
var ErrNoGPT = errors.New("no valid GPT")

// ReadGPT reads the partitions of the primary GPT, checking its CRCs.
func ReadGPT(r io.ReaderAt) ([]Partition, error) {
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, SectorSize); err != nil {
		return nil, fmt.Errorf("%w: reading the header: %v", ErrNoGPT, err)
	}
	if string(h[:8]) != "EFI PART" {
		return nil, fmt.Errorf("%w: no signature", ErrNoGPT)
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < 92 || hsize > SectorSize {
		return nil, fmt.Errorf("%w: header size %d", ErrNoGPT, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	c := append([]byte{}, h[:hsize]...)
	binary.LittleEndian.PutUint32(c[16:], 0)
	if crc32.ChecksumIEEE(c) != want {
		return nil, fmt.Errorf("%w: header checksum", ErrNoGPT)
	}
	lba := binary.LittleEndian.Uint64(h[72:])
	n := binary.LittleEndian.Uint32(h[80:])
	esize := binary.LittleEndian.Uint32(h[84:])
	if n == 0 || n > 1024 || esize < 128 || esize > 1024 || lba > 1<<40 {
		return nil, fmt.Errorf("%w: %d entries of %d bytes at sector %d", ErrNoGPT, n, esize, lba)
	}
	entries := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(entries, int64(lba)*SectorSize); err != nil {
		return nil, fmt.Errorf("%w: reading the entries: %v", ErrNoGPT, err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(h[88:]) {
		return nil, fmt.Errorf("%w: entries checksum", ErrNoGPT)
	}
	var parts []Partition
	for i := range int(n) {
		e := entries[i*int(esize):]
		var typ GUID
		copy(typ[:], e[:16])
		if typ == (GUID{}) {
			continue
		}
		first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		if last < first || last >= 1<<50 {
			return nil, fmt.Errorf("%w: entry %d spans sectors %d-%d", ErrNoGPT, i, first, last)
		}
		var name []uint16
		for j := 0; j < 36; j++ {
			c := binary.LittleEndian.Uint16(e[56+2*j:])
			if c == 0 {
				break
			}
			name = append(name, c)
		}
		parts = append(parts, Partition{
			Name:  string(utf16.Decode(name)),
			Type:  typ,
			Start: int64(first) * SectorSize,
			Size:  int64(last-first+1) * SectorSize,
		})
	}
	return parts, nil
}

// FitGPT moves the backup GPT of a disk written from a smaller image to
// the disk's end (size bytes) and lets the usable area reach it, so that
// the kernel and partitioning tools find both copies where they belong.
// The partitions are not changed.
func FitGPT(d interface {
	io.ReaderAt
	io.WriterAt
}, size int64) error {
	if _, err := ReadGPT(d); err != nil {
		return err
	}
	h := make([]byte, SectorSize)
	if _, err := d.ReadAt(h, SectorSize); err != nil {
		return fmt.Errorf("reading the GPT: %w", err)
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	oldBackup := int64(binary.LittleEndian.Uint64(h[32:]))
	n, esize := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
	entries := make([]byte, int(n)*int(esize))
	if _, err := d.ReadAt(entries, int64(binary.LittleEndian.Uint64(h[72:]))*SectorSize); err != nil {
		return fmt.Errorf("reading the GPT: %w", err)
	}
	lastLBA := size/SectorSize - 1
	if lastLBA == oldBackup {
		return nil
	}
	entriesLBA := lastLBA - (int64(len(entries))+SectorSize-1)/SectorSize
	if entriesLBA-1 < int64(binary.LittleEndian.Uint64(h[48:])) {
		return fmt.Errorf("GPT: a disk of %d bytes is smaller than the image's partitions", size)
	}
	seal := func(h []byte) {
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hsize]))
	}
	binary.LittleEndian.PutUint64(h[32:], uint64(lastLBA))
	binary.LittleEndian.PutUint64(h[48:], uint64(entriesLBA-1))
	seal(h)
	b := append([]byte{}, h...)
	binary.LittleEndian.PutUint64(b[24:], uint64(lastLBA))
	binary.LittleEndian.PutUint64(b[32:], 1)
	binary.LittleEndian.PutUint64(b[72:], uint64(entriesLBA))
	seal(b)
	mbr := make([]byte, SectorSize)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the protective MBR: %w", err)
	}
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(min(lastLBA, 0xFFFFFFFF)))
	for _, wr := range []struct {
		lba int64
		b   []byte
	}{
		{entriesLBA, entries},
		{lastLBA, b},
		{oldBackup, make([]byte, SectorSize)}, // the old backup header, now inside the disk
		{1, h},
		{0, mbr},
	} {
		if _, err := d.WriteAt(wr.b, wr.lba*SectorSize); err != nil {
			return fmt.Errorf("writing the GPT: %w", err)
		}
	}
	return nil
}
