package store

import (
	"bytes"
	"encoding/json"
	"testing"
)

// pagesReader serves two meta pages at 0 and pageSize, zeros elsewhere,
// so FuzzPrecheck can work on small inputs that stand for a large file.
type pagesReader struct {
	pageSize int64
	meta     [2][]byte
}

func (r pagesReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for i, m := range r.meta {
		if start := int64(i) * r.pageSize; off == start {
			copy(p, m)
		}
	}
	return len(p), nil
}

// FuzzPrecheck: the meta-page reader never panics, whatever the pages say.
func FuzzPrecheck(f *testing.F) {
	s, err := Open(f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		f.Fatal(err)
	}
	s.Close()
	const n = pageHeaderSize + metaSize
	b := snap.Bytes()
	f.Add(b[:n], b[4096:4096+n], int64(4096), int64(snap.Len()))
	f.Add(b[:n], b[4096:4096+n], int64(4096), int64(100))
	f.Add([]byte("x"), []byte{}, int64(512), int64(1))
	f.Fuzz(func(t *testing.T, m0, m1 []byte, pageSize, size int64) {
		if pageSize <= 0 {
			pageSize = 4096
		}
		_ = precheckMeta(pagesReader{pageSize: pageSize, meta: [2][]byte{m0, m1}}, size)
	})
}

// FuzzApply feeds arbitrary change streams (as JSON, the way they arrive
// from the twin) to Apply: it must never panic, and whatever it accepts or
// refuses, the store stays consistent and its log contiguous.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`[{"seq":1,"bucket":"raw","key":"a","value":"eA=="},{"seq":2,"bucket":"raw","key":"a","delete":true}]`))
	f.Add([]byte(`[{"seq":1,"bucket":"_meta","key":"seq","value":"AAAAAAAAAAA="}]`))
	f.Add([]byte(`[{"seq":3,"bucket":"raw","key":"a"}]`))
	f.Add([]byte(`[{"seq":1,"bucket":"","key":""},{"seq":18446744073709551615,"bucket":"b","key":"k"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cs []Change
		if json.Unmarshal(data, &cs) != nil {
			return
		}
		s, err := Open(t.TempDir(), Options{LogKeep: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		before := s.Seq()
		err = s.Apply(cs)
		if err != nil && s.Seq() != before {
			t.Fatalf("failed Apply moved Seq from %d to %d", before, s.Seq())
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		first, last, err := s.LogBounds()
		if err != nil || last != s.Seq() || first > last+1 {
			t.Fatalf("log bounds %d..%d, Seq %d, %v", first, last, s.Seq(), err)
		}
		if _, err := s.ChangesSince(first-1, 0); err != nil {
			t.Fatalf("reading the log back: %v", err)
		}
	})
}

// FuzzRestoreSnapshot feeds damaged snapshots to RestoreSnapshot: it must
// never panic or crash, and refuse what it cannot check.
func FuzzRestoreSnapshot(f *testing.F) {
	src, err := Open(f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := src.Update(func(tx *Tx) error { return tx.Put("raw", k, bytes.Repeat([]byte(k), 3000)) }); err != nil {
			f.Fatal(err)
		}
	}
	var snap bytes.Buffer
	if err := src.Snapshot(&snap); err != nil {
		f.Fatal(err)
	}
	src.Close()
	// The fuzzer describes the damage (where, what, how much is cut off)
	// rather than the whole file, so that its inputs stay small.
	good := snap.Bytes()
	f.Add(uint32(0), []byte{}, uint32(0))
	f.Add(uint32(20), []byte{0xff}, uint32(0))
	f.Add(uint32(4096*2+16), []byte{1, 2, 3, 4}, uint32(0))
	f.Add(uint32(0), []byte{}, uint32(4096))
	f.Fuzz(func(t *testing.T, off uint32, patch []byte, cut uint32) {
		data := bytes.Clone(good)
		o := int(off % uint32(len(data)))
		copy(data[o:], patch)
		data = data[:len(data)-int(cut%uint32(len(data)+1))]
		damaged := !bytes.Equal(data, good)
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RestoreSnapshot(bytes.NewReader(data)); err != nil {
			if !damaged {
				t.Fatalf("good snapshot refused: %v", err)
			}
			return
		}
		if damaged {
			t.Fatal("damaged snapshot accepted")
		}
		if err := s.Check(); err != nil {
			t.Fatalf("accepted snapshot fails the check: %v", err)
		}
	})
}
