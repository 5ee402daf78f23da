package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dump returns every user bucket's contents, for comparing stores.
func dump(t *testing.T, s *Store) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	err := s.View(func(tx *Tx) error {
		for _, b := range []string{BucketConfig, BucketBindings, BucketCDRs, BucketDialogs, "raw"} {
			m := map[string]string{}
			if err := tx.ForEach(b, "", "", func(k string, v []byte) error { m[k] = string(v); return nil }); err != nil {
				return err
			}
			out[b] = m
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUpdateRecordsChanges(t *testing.T) {
	s := openT(t, "", Options{})
	if s.Seq() != 0 {
		t.Fatalf("new store Seq = %d", s.Seq())
	}
	err := s.Update(func(tx *Tx) error {
		if err := tx.Put("raw", "a", []byte("1")); err != nil {
			return err
		}
		if err := tx.Put("raw", "b", nil); err != nil {
			return err
		}
		if err := tx.Delete("raw", "missing"); err != nil {
			return err
		}
		if got := tx.Get("raw", "a"); string(got) != "1" {
			t.Errorf("Get in the same transaction = %q", got)
		}
		return tx.Delete("raw", "b")
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Seq: 1, Bucket: "raw", Key: "a", Value: []byte("1")},
		{Seq: 2, Bucket: "raw", Key: "b"},
		{Seq: 3, Bucket: "raw", Key: "b", Delete: true},
	}
	got, err := s.ChangesSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ChangesSince(0) = %+v, want %+v", got, want)
	}
	if s.Seq() != 3 {
		t.Errorf("Seq = %d, want 3", s.Seq())
	}
	tests := []struct {
		since uint64
		limit int
		want  []Change
	}{
		{0, 2, want[:2]},
		{1, 1, want[1:2]},
		{2, 0, want[2:]},
		{3, 0, nil},
	}
	for _, tt := range tests {
		got, err := s.ChangesSince(tt.since, tt.limit)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ChangesSince(%d, %d) = %+v, %v; want %+v", tt.since, tt.limit, got, err, tt.want)
		}
	}
	if _, err := s.ChangesSince(4, 0); err == nil {
		t.Error("ChangesSince beyond Seq gave no error")
	}
	// A write that changes nothing takes no seq.
	if err := s.Update(func(tx *Tx) error { return tx.Delete("raw", "nothing") }); err != nil || s.Seq() != 3 {
		t.Errorf("no-op Update: %v, Seq %d", err, s.Seq())
	}
}

func TestUpdateRefusesBadNames(t *testing.T) {
	s := openT(t, "", Options{})
	tests := []struct{ bucket, key string }{
		{"", "k"}, {"raw", ""}, {"_log", "k"}, {"_meta", "seq"}, {"raw", strings.Repeat("k", 40000)},
	}
	for _, tt := range tests {
		err := s.Update(func(tx *Tx) error { return tx.Put(tt.bucket, tt.key, []byte("v")) })
		if err == nil {
			t.Errorf("Put(%q, %.10q) accepted", tt.bucket, tt.key)
		}
	}
	if err := s.Update(func(tx *Tx) error { return tx.Put("_meta", "seq", nil) }); !errors.Is(err, ErrReserved) {
		t.Errorf("Put into _meta: %v, want ErrReserved", err)
	}
	if err := s.View(func(tx *Tx) error { return tx.Put("raw", "k", nil) }); err == nil {
		t.Error("Put in View accepted")
	}
	if s.Seq() != 0 {
		t.Errorf("failed writes moved Seq to %d", s.Seq())
	}
}

func TestAbortedUpdateWritesNothing(t *testing.T) {
	hookErr := errors.New("twin did not acknowledge")
	var fail bool
	var seen [][]Change
	s := openT(t, "", Options{BeforeCommit: func(cs []Change) error {
		seen = append(seen, cs)
		if fail {
			return hookErr
		}
		return nil
	}})
	put := func(k string) error {
		return s.Update(func(tx *Tx) error { return tx.Put("raw", k, []byte(k)) })
	}
	if err := put("a"); err != nil {
		t.Fatal(err)
	}
	fail = true
	if err := put("b"); !errors.Is(err, hookErr) {
		t.Fatalf("Update with failing hook = %v, want the hook's error", err)
	}
	fnErr := errors.New("caller changed its mind")
	if err := s.Update(func(tx *Tx) error { tx.Put("raw", "c", nil); return fnErr }); !errors.Is(err, fnErr) {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	fail = false
	if err := put("d"); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, s)["raw"]; !reflect.DeepEqual(got, map[string]string{"a": "a", "d": "d"}) {
		t.Errorf("contents after aborted writes = %v", got)
	}
	cs, err := s.ChangesSince(0, 0)
	if err != nil || len(cs) != 2 || cs[0].Seq != 1 || cs[1].Seq != 2 || cs[1].Key != "d" {
		t.Errorf("log after aborted writes = %+v, %v; want seq 1 (a), 2 (d)", cs, err)
	}
	// The hook saw a, b (aborted) and d, each with the seq it would get;
	// the function's own error came before the hook.
	if len(seen) != 3 || seen[1][0].Key != "b" || seen[1][0].Seq != 2 || seen[2][0].Seq != 2 {
		t.Errorf("hook calls = %+v", seen)
	}
}

func TestLogTrim(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{LogKeep: 5})
	for i := range 12 {
		if err := s.Update(func(tx *Tx) error { return tx.Put("raw", fmt.Sprint(i), nil) }); err != nil {
			t.Fatal(err)
		}
	}
	first, last, err := s.LogBounds()
	if err != nil || first != 8 || last != 12 {
		t.Fatalf("LogBounds = %d, %d, %v; want 8, 12", first, last, err)
	}
	if _, err := s.ChangesSince(6, 0); !errors.Is(err, ErrTrimmed) {
		t.Errorf("ChangesSince(6) = %v, want ErrTrimmed", err)
	}
	cs, err := s.ChangesSince(7, 0)
	if err != nil || len(cs) != 5 || cs[0].Seq != 8 {
		t.Errorf("ChangesSince(7) = %+v, %v", cs, err)
	}
	// A multi-change transaction larger than LogKeep keeps the newest.
	if err := s.Update(func(tx *Tx) error {
		for i := range 7 {
			if err := tx.Put("raw", fmt.Sprint("m", i), nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if first, last, _ := s.LogBounds(); first != 15 || last != 19 {
		t.Errorf("LogBounds = %d, %d; want 15, 19", first, last)
	}
	// Bounds survive reopening.
	s.Close()
	s = openT(t, dir, Options{LogKeep: 5})
	if first, last, _ := s.LogBounds(); first != 15 || last != 19 || s.Seq() != 19 {
		t.Errorf("after reopen: LogBounds = %d, %d, Seq %d", first, last, s.Seq())
	}
}

// fill writes a mix of every kind of record through the typed API.
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range n {
		steps := []error{
			s.AppendCDR(testCDR(fmt.Sprint("c", i), base.Add(time.Duration(n-i)*time.Minute))),
			s.SaveBinding(testBinding("100", fmt.Sprintf("sip:100@192.0.2.%d", i%3), base)),
			s.PutDialog(fmt.Sprint("d", i%4), []byte(fmt.Sprint("state", i))),
		}
		if i%3 == 2 {
			steps = append(steps, s.DeleteBinding("100", "sip:100@192.0.2.0"), s.DeleteDialog(fmt.Sprint("d", i%4)))
		}
		if i%5 == 0 {
			steps = append(steps, s.SaveConfig([]byte(fmt.Sprint("version: ", s.Seq()+1)), s.Seq()+1))
		}
		if err := errors.Join(steps...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestApplyReplicates(t *testing.T) {
	primary := openT(t, "", Options{})
	replica := openT(t, "", Options{})
	fill(t, primary, 20)
	for replica.Seq() < primary.Seq() {
		cs, err := primary.ChangesSince(replica.Seq(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if err := replica.Apply(cs); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(dump(t, replica), dump(t, primary)) {
		t.Fatal("replica differs from primary after Apply")
	}
	all, err := primary.ChangesSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	replicaLog, err := replica.ChangesSince(0, 0)
	if err != nil || !reflect.DeepEqual(replicaLog, all) {
		t.Fatalf("replica's log differs: %v", err)
	}
	// Idempotent: the whole stream again changes nothing.
	if err := replica.Apply(all); err != nil {
		t.Fatalf("re-Apply: %v", err)
	}
	if replica.Seq() != primary.Seq() || !reflect.DeepEqual(dump(t, replica), dump(t, primary)) {
		t.Fatal("re-Apply changed the replica")
	}

	// A gap is refused and writes nothing, even the part before the gap.
	fill(t, primary, 3)
	more, err := primary.ChangesSince(replica.Seq(), 0)
	if err != nil || len(more) < 3 {
		t.Fatalf("ChangesSince: %d changes, %v", len(more), err)
	}
	seq := replica.Seq()
	gappy := append([]Change{more[0]}, more[2:]...)
	if err := replica.Apply(gappy); !errors.Is(err, ErrGap) {
		t.Errorf("Apply with a gap = %v, want ErrGap", err)
	}
	if replica.Seq() != seq {
		t.Errorf("refused Apply moved Seq from %d to %d", seq, replica.Seq())
	}
	// Diverged history is refused.
	bad := all[len(all)-1]
	bad.Value = []byte("something else")
	if err := replica.Apply([]Change{bad}); !errors.Is(err, ErrDiverged) {
		t.Errorf("Apply of a conflicting change = %v, want ErrDiverged", err)
	}
	// Reserved buckets cannot be written through Apply.
	if err := replica.Apply([]Change{{Seq: seq + 1, Bucket: "_meta", Key: "seq", Value: []byte{0}}}); !errors.Is(err, ErrReserved) {
		t.Errorf("Apply into _meta = %v, want ErrReserved", err)
	}
	if err := replica.Apply(more); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dump(t, replica), dump(t, primary)) {
		t.Fatal("replica differs from primary after catching up")
	}
}

func TestSnapshotRestore(t *testing.T) {
	primary := openT(t, "", Options{LogKeep: 10})
	fill(t, primary, 15)
	replica := openT(t, "", Options{LogKeep: 10})
	fill(t, replica, 2) // content that the snapshot must replace
	if _, err := primary.ChangesSince(replica.Seq(), 0); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ChangesSince for a stale replica = %v, want ErrTrimmed", err)
	}
	var snap bytes.Buffer
	if err := primary.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	// Broken snapshots leave the replica as it was.
	before := dump(t, replica)
	body := snap.Bytes()[len(snapshotMagic)+8 : snap.Len()-sha256.Size]
	for name, data := range map[string][]byte{
		"garbage":          bytes.Repeat([]byte("not a database "), 1000),
		"truncated":        snap.Bytes()[:snap.Len()/3],
		"empty":            nil,
		"trailing data":    append(bytes.Clone(snap.Bytes()), 0),
		"checksum":         append(bytes.Clone(snap.Bytes()[:snap.Len()-1]), snap.Bytes()[snap.Len()-1]^1),
		"framed garbage":   frame(bytes.Repeat([]byte("not a database "), 1000)),
		"framed cut short": frame(body[:len(body)/2]),
	} {
		if err := replica.RestoreSnapshot(bytes.NewReader(data)); err == nil {
			t.Errorf("%s snapshot accepted", name)
		}
		if !reflect.DeepEqual(dump(t, replica), before) {
			t.Fatalf("%s snapshot changed the store", name)
		}
	}
	if err := replica.RestoreSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if replica.Seq() != primary.Seq() || !reflect.DeepEqual(dump(t, replica), dump(t, primary)) {
		t.Fatal("restored replica differs from primary")
	}
	if err := replica.Check(); err != nil {
		t.Fatal(err)
	}
	// Streaming resumes after the restore.
	fill(t, primary, 2)
	cs, err := primary.ChangesSince(replica.Seq(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Apply(cs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dump(t, replica), dump(t, primary)) {
		t.Fatal("replica differs after resuming")
	}
	if _, err := os.Stat(replica.Path() + ".restore"); !os.IsNotExist(err) {
		t.Errorf("restore left its temporary file: %v", err)
	}
}

// frame wraps data as a snapshot with a correct length and checksum.
func frame(data []byte) []byte {
	sum := sha256.Sum256(data)
	out := binary.BigEndian.AppendUint64([]byte(snapshotMagic), uint64(len(data)))
	return append(append(out, data...), sum[:]...)
}

func TestOpenErrors(t *testing.T) {
	t.Run("corrupt", func(t *testing.T) {
		for name, data := range map[string][]byte{
			"garbage": bytes.Repeat([]byte("twinpbx "), 4096),
			"short":   []byte("x"),
		} {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("%s: Open = %v, want a corrupt-file error naming %s", name, err, path)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s, 200)
		s.Close()
		path := filepath.Join(dir, FileName)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		_, err = Open(dir, Options{})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "cut short") {
			t.Errorf("Open of a truncated store = %v, want a cut-short error naming %s", err, path)
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		openT(t, dir, Options{})
		s, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Fatal("second Open of a locked store succeeded")
		}
		if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
			t.Errorf("Open = %v, want a locked error naming the file", err)
		}
	})
	t.Run("not a folder", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(f, Options{}); err == nil {
			t.Error("Open on a file as folder succeeded")
		}
	})
}

// TestConcurrentWriters: writers in parallel get one contiguous log, each
// change exactly once.
func TestConcurrentWriters(t *testing.T) {
	s := openT(t, "", Options{})
	const writers, each = 4, 25
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				if err := s.Update(func(tx *Tx) error { return tx.Put("raw", fmt.Sprint(w, "-", i), nil) }); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cs, err := s.ChangesSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, c := range cs {
		if c.Seq != uint64(i+1) || seen[c.Key] {
			t.Fatalf("change %d: %+v (seen before: %v)", i, c, seen[c.Key])
		}
		seen[c.Key] = true
	}
	if len(cs) != writers*each {
		t.Errorf("%d changes, want %d", len(cs), writers*each)
	}
}

// The change log only grows at its end: its pages are filled before they
// split (bbolt's default leaves every page it splits half empty, which
// doubled the log's share of the file and of the memory it is mapped
// into), and trimming its head keeps them so. With entries of a
// binding's size (about 420 bytes, nine to a page) bbolt still leaves
// three to the new page, hence 7 of 9.6: 73 %, against 42 % before.
func TestLogPagesFull(t *testing.T) {
	s := openT(t, "", Options{LogKeep: 3000})
	val := bytes.Repeat([]byte("b"), 250) // about a binding's record
	for i := range 4000 {
		if err := s.Update(func(tx *Tx) error {
			return tx.Put("bindings", fmt.Sprintf("aor-%05d", i), val)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var st bolt.BucketStats
	if err := s.db.View(func(tx *bolt.Tx) error {
		st = tx.Bucket(logBucket).Stats()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st.KeyN != 3000 {
		t.Fatalf("log holds %d changes, want 3000", st.KeyN)
	}
	if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.65 {
		t.Errorf("log leaf pages %.0f %% full (%d of %d bytes), want at least 65 %%", 100*fill, st.LeafInuse, st.LeafAlloc)
	}
}
