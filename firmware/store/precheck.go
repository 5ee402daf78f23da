package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt maps the file into memory and trusts its meta pages: a file cut
// short (a partial copy, a snapshot truncated in transit, a disk that lost
// its tail) makes it touch pages past the end and the process dies of
// SIGBUS, which no recover catches. precheck reads the two meta pages the
// way bbolt lays them out and refuses a file shorter than its newest valid
// meta page says it is.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSumOffset  = 56 // bytes of the meta struct covered by its checksum
	metaSize       = metaSumOffset + 8
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

// parseMeta decodes a meta page's body; ok is false when it is not valid.
func parseMeta(b []byte) (m boltMeta, ok bool) {
	if len(b) < metaSize {
		return m, false
	}
	e := binary.NativeEndian // bbolt writes its structs in host order
	h := fnv.New64a()
	h.Write(b[:metaSumOffset])
	if e.Uint32(b[0:]) != boltMagic || e.Uint32(b[4:]) != boltVersion || h.Sum64() != e.Uint64(b[metaSumOffset:]) {
		return m, false
	}
	m = boltMeta{pageSize: e.Uint32(b[8:]), pgid: e.Uint64(b[40:]), txid: e.Uint64(b[48:])}
	return m, m.pageSize >= 512 && m.pageSize <= 1<<20 && m.pageSize&(m.pageSize-1) == 0
}

// precheck returns nil for a missing or empty file (bbolt creates a new
// store there) and for a file whose meta pages fit its size.
func precheck(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return precheckMeta(f, fi.Size())
}

// precheckMeta checks the meta pages of a bbolt file of size bytes read
// through f.
func precheckMeta(f io.ReaderAt, size int64) error {
	if size == 0 {
		return nil
	}
	head := make([]byte, pageHeaderSize+metaSize)
	var best boltMeta
	found := false
	// Meta page 0 sits at offset 0, meta page 1 one page further; the page
	// size is in meta 0 (if meta 0 is bad, try the usual page sizes).
	offsets := []int64{0}
	if _, err := f.ReadAt(head, 0); err == nil {
		if m, ok := parseMeta(head[pageHeaderSize:]); ok {
			best, found = m, true
			offsets = append(offsets, int64(m.pageSize))
		}
	}
	if !found {
		offsets = append(offsets, 4096, 8192, 16384, 65536)
	}
	for _, off := range offsets[1:] {
		if _, err := f.ReadAt(head, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if m, ok := parseMeta(head[pageHeaderSize:]); ok && int64(m.pageSize) == off && (!found || m.txid > best.txid) {
			best, found = m, true
		}
	}
	if !found {
		return errors.New("no valid meta page")
	}
	if need := int64(best.pgid) * int64(best.pageSize); best.pgid > 1<<40 || size < need {
		return fmt.Errorf("file is %d bytes but its meta page says %d: it was cut short", size, need)
	}
	return nil
}
