// Package store is the box's durable state: one bbolt file in the data
// folder holding the versioned config, location bindings, CDRs and dialog
// state. Every write is an fsync'd transaction that also appends its changes
// to an ordered change log, so the twin can be kept identical by streaming
// that log (ChangesSince on the active, Apply on the standby) and, when it
// has fallen too far behind, by a snapshot. Bindings, CDRs and dialog state
// written at the same time share one transaction and one fsync (group
// commit).
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside the data folder.
const FileName = "twinpbx.db"

// DefaultLogKeep is how many changes the log keeps when Options.LogKeep is 0.
const DefaultLogKeep = 100000

// Errors callers may test for with errors.Is.
var (
	// ErrNotFound: the thing asked for is not stored.
	ErrNotFound = errors.New("not found")
	// ErrGap: Apply was given changes that do not follow the local sequence.
	ErrGap = errors.New("gap in change sequence")
	// ErrTrimmed: ChangesSince was asked for changes the log no longer
	// holds; the replica needs a snapshot.
	ErrTrimmed = errors.New("changes no longer in the log")
	// ErrDiverged: Apply was given a change whose sequence number the store
	// already holds with different content (the twins wrote independently).
	ErrDiverged = errors.New("change log diverged")
	// ErrReserved: bucket names starting with "_" belong to the store.
	ErrReserved = errors.New("reserved bucket name")
)

// Options tune a Store. The zero value is good.
type Options struct {
	// LogKeep is how many of the newest changes the log keeps (0: DefaultLogKeep).
	LogKeep int
	// BeforeCommit, if set, is called inside every Update that changed
	// something, with that transaction's changes, just before bbolt commits.
	// An error aborts the write, and Update returns it. Replication plugs in
	// here: send the changes to the twin and return once it has them. It is
	// called with the write lock held: no other write can start meanwhile,
	// and it must not call back into the Store. Apply does not call it.
	BeforeCommit func([]Change) error
	// GroupDelay is the longest a write of a binding, CDR or dialog waits
	// for others to share its commit, when writes have lately been
	// arriving less than twice that apart (0: DefaultGroupDelay; negative:
	// never wait, batch only what arrives during a commit). See group.go.
	GroupDelay time.Duration
	// LockTimeout bounds the wait for the file lock another process holds
	// (0: 2s).
	LockTimeout time.Duration
	// Logger for the store's few messages (nil: slog.Default()).
	Logger *slog.Logger
}

// Change is one write, as recorded in the change log and sent to the twin.
type Change struct {
	Seq    uint64 `json:"seq"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// Store is an open store. Its methods are safe for concurrent use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	mu sync.RWMutex // guards db against RestoreSnapshot swapping it
	db *bolt.DB

	gmu   sync.Mutex // guards group
	group groupQueue
}

// Internal buckets and meta keys.
var (
	metaBucket = []byte("_meta")
	logBucket  = []byte("_log")
	seqKey     = []byte("seq")   // last seq assigned
	firstKey   = []byte("first") // oldest seq still in the log
)

// Open opens (creating if needed) the store in dir. A file that is corrupt
// or locked by another process gives an error naming it.
func Open(dir string, opts Options) (*Store, error) {
	if opts.LogKeep <= 0 {
		opts.LogKeep = DefaultLogKeep
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.GroupDelay == 0 {
		opts.GroupDelay = DefaultGroupDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating store folder: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), opts: opts, log: opts.Logger}
	s.group.max = maxBatch
	s.group.gap = -1 // no waiting until writes are known to come often
	db, err := openDB(s.path, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// openDB opens a bbolt file and makes sure the internal buckets exist and
// the log bounds make sense.
func openDB(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some kinds of damage
			err = fmt.Errorf("opening store %s: the file is corrupt: %v", path, r)
		}
	}()
	if err := precheck(path); err != nil {
		return nil, fmt.Errorf("opening store %s: the file is corrupt: %w", path, err)
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	switch {
	case errors.Is(err, bolterr.ErrTimeout):
		return nil, fmt.Errorf("opening store %s: locked by another process (waited %s): %w", path, timeout, err)
	case errors.Is(err, bolterr.ErrInvalid), errors.Is(err, bolterr.ErrChecksum), errors.Is(err, bolterr.ErrVersionMismatch):
		return nil, fmt.Errorf("opening store %s: the file is corrupt or not a store: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{metaBucket, logBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		seq, first := logBounds(tx)
		if first == 0 {
			return putU64(tx.Bucket(metaBucket), firstKey, 1)
		}
		if first > seq+1 {
			return fmt.Errorf("change log bounds out of order (first %d, last %d)", first, seq)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return db, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}

// Tx is a transaction of Update (read-write) or View (read-only). It is
// valid only inside the function it was passed to.
type Tx struct {
	tx      *bolt.Tx
	seq     uint64 // last seq assigned, as of this transaction
	changes []Change
}

func checkName(bucket, key string) error {
	switch {
	case bucket == "":
		return errors.New("empty bucket name")
	case strings.HasPrefix(bucket, "_"):
		return fmt.Errorf("bucket %q: %w", bucket, ErrReserved)
	case key == "":
		return fmt.Errorf("empty key in bucket %q", bucket)
	case len(key) > bolt.MaxKeySize:
		return fmt.Errorf("key in bucket %q longer than %d bytes", bucket, bolt.MaxKeySize)
	}
	return nil
}

// Put stores val under key in bucket (created on first use) and records
// the change.
func (t *Tx) Put(bucket, key string, val []byte) error {
	if err := checkName(bucket, key); err != nil {
		return err
	}
	if !t.tx.Writable() {
		return fmt.Errorf("putting %s/%s: read-only transaction", bucket, key)
	}
	if err := t.put(Change{Seq: t.seq + 1, Bucket: bucket, Key: key, Value: val}); err != nil {
		return err
	}
	t.seq++
	return nil
}

// Delete removes key from bucket and records the change. Deleting what is
// not there changes nothing and records nothing.
func (t *Tx) Delete(bucket, key string) error {
	if err := checkName(bucket, key); err != nil {
		return err
	}
	if !t.tx.Writable() {
		return fmt.Errorf("deleting %s/%s: read-only transaction", bucket, key)
	}
	if b := t.tx.Bucket([]byte(bucket)); b == nil {
		return nil
	} else if k, _ := b.Cursor().Seek([]byte(key)); k == nil || string(k) != key {
		return nil
	}
	if err := t.put(Change{Seq: t.seq + 1, Bucket: bucket, Key: key, Delete: true}); err != nil {
		return err
	}
	t.seq++
	return nil
}

// put applies c to its bucket and appends it to the log.
func (t *Tx) put(c Change) error {
	b, err := t.tx.CreateBucketIfNotExists([]byte(c.Bucket))
	if err != nil {
		return fmt.Errorf("creating bucket %q: %w", c.Bucket, err)
	}
	if c.Delete {
		err = b.Delete([]byte(c.Key))
	} else {
		err = b.Put([]byte(c.Key), c.Value)
	}
	if err != nil {
		return fmt.Errorf("writing %s/%s: %w", c.Bucket, c.Key, err)
	}
	rec, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding change %d: %w", c.Seq, err)
	}
	if err := changeLog(t.tx).Put(seqBytes(c.Seq), rec); err != nil {
		return fmt.Errorf("appending change %d to the log: %w", c.Seq, err)
	}
	c.Value = append([]byte(nil), c.Value...)
	t.changes = append(t.changes, c)
	return nil
}

// changeLog is the log bucket of a writable transaction. Changes are
// only ever appended to it (sequence numbers in big-endian order) and
// trimmed from its head, so its pages are filled before they split:
// bbolt's default split leaves each page half empty, since it expects
// keys to land anywhere; here they never come back to a page once it is
// left behind. bbolt still leaves three entries to the new page, so with
// entries of a binding's size the pages are about 73 % used instead of
// 42 %: the log takes about 40 % fewer pages (TestLogPagesFull), in the
// file and in the memory it is mapped into.
func changeLog(btx *bolt.Tx) *bolt.Bucket {
	lb := btx.Bucket(logBucket)
	lb.FillPercent = 0.95
	return lb
}

// Get returns a copy of the value of key in bucket, or nil.
func (t *Tx) Get(bucket, key string) []byte {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}

// ForEach calls fn for every key of bucket in key order, from the first
// key not below from up to (not including) to; empty from and to mean no
// bound. val is valid only during the call. An error from fn stops the
// walk and is returned.
func (t *Tx) ForEach(bucket, from, to string, fn func(key string, val []byte) error) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var k, v []byte
	if from == "" {
		k, v = c.First()
	} else {
		k, v = c.Seek([]byte(from))
	}
	for ; k != nil; k, v = c.Next() {
		if to != "" && string(k) >= to {
			break
		}
		if v == nil && b.Bucket(k) != nil {
			continue // a nested bucket; the store makes none
		}
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// Update runs fn in a read-write transaction and commits it durably
// (fsync'd) unless fn or Options.BeforeCommit returns an error, in which
// case nothing is written and the error is returned.
func (s *Store) Update(fn func(*Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(func(btx *bolt.Tx) error {
		seq, first := logBounds(btx)
		t := &Tx{tx: btx, seq: seq}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.changes) == 0 {
			return nil
		}
		if err := s.finish(btx, t.seq, first); err != nil {
			return err
		}
		if s.opts.BeforeCommit != nil {
			if err := s.opts.BeforeCommit(t.changes); err != nil {
				return fmt.Errorf("before commit of changes %d..%d: %w", t.changes[0].Seq, t.seq, err)
			}
		}
		return nil
	})
}

// finish records the new last seq and trims the log to LogKeep entries.
func (s *Store) finish(btx *bolt.Tx, seq, first uint64) error {
	meta, lb := btx.Bucket(metaBucket), changeLog(btx)
	if err := putU64(meta, seqKey, seq); err != nil {
		return fmt.Errorf("saving change seq: %w", err)
	}
	keep := uint64(s.opts.LogKeep)
	if seq-first+1 <= keep {
		return nil
	}
	newFirst := seq - keep + 1
	c := lb.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < newFirst; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("trimming change log: %w", err)
		}
	}
	if err := putU64(meta, firstKey, newFirst); err != nil {
		return fmt.Errorf("trimming change log: %w", err)
	}
	return nil
}

// View runs fn in a read-only transaction (Put and Delete fail in it).
func (s *Store) View(fn func(*Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(func(btx *bolt.Tx) error {
		seq, _ := logBounds(btx)
		return fn(&Tx{tx: btx, seq: seq})
	})
}

// Seq is the sequence number of the last change written or applied (0 for
// a new store, and when the store cannot be read).
func (s *Store) Seq() uint64 {
	var seq uint64
	_ = s.View(func(t *Tx) error { seq = t.seq; return nil })
	return seq
}

// LogBounds returns the oldest and newest seq the change log holds; first
// is last+1 when the log is empty.
func (s *Store) LogBounds() (first, last uint64, err error) {
	err = s.View(func(t *Tx) error {
		last, first = logBounds(t.tx)
		return nil
	})
	return first, last, err
}

// ChangesSince returns the changes after seq, oldest first, at most limit
// of them (limit <= 0: all). It fails with ErrTrimmed when the log no
// longer reaches back to seq+1: the replica then needs a snapshot.
func (s *Store) ChangesSince(seq uint64, limit int) ([]Change, error) {
	var out []Change
	err := s.View(func(t *Tx) error {
		last, first := logBounds(t.tx)
		if seq > last {
			return fmt.Errorf("changes since %d: this store is only at %d", seq, last)
		}
		if seq == last {
			return nil
		}
		if seq+1 < first {
			return fmt.Errorf("changes since %d: the log starts at %d: %w", seq, first, ErrTrimmed)
		}
		c := t.tx.Bucket(logBucket).Cursor()
		for k, v := c.Seek(seqBytes(seq + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("reading change %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if want := seq + uint64(len(out)) + 1; ch.Seq != want {
				return fmt.Errorf("change log is missing change %d (found %d)", want, ch.Seq)
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

// Apply writes changes received from the twin, in one transaction, keeping
// their sequence numbers so this store's log matches the twin's. Changes
// the store already holds are skipped (Apply is idempotent); the first new
// one must follow Seq() directly, else ErrGap and nothing is written. A
// change already held under its seq with different content fails with
// ErrDiverged. Options.BeforeCommit is not called.
func (s *Store) Apply(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(func(btx *bolt.Tx) error {
		seq, first := logBounds(btx)
		t := &Tx{tx: btx, seq: seq}
		for _, c := range changes {
			if err := checkName(c.Bucket, c.Key); err != nil {
				return fmt.Errorf("applying change %d: %w", c.Seq, err)
			}
			if c.Seq <= t.seq {
				if err := sameAsLogged(btx, c, first); err != nil {
					return err
				}
				continue
			}
			if c.Seq != t.seq+1 {
				return fmt.Errorf("applying change %d: store is at %d, changes %d..%d are missing: %w", c.Seq, t.seq, t.seq+1, c.Seq-1, ErrGap)
			}
			if c.Delete {
				c.Value = nil
			}
			if err := t.put(c); err != nil {
				return fmt.Errorf("applying change %d: %w", c.Seq, err)
			}
			t.seq++
		}
		if len(t.changes) == 0 {
			return nil
		}
		return s.finish(btx, t.seq, first)
	})
}

// sameAsLogged checks that an already applied change matches the log.
func sameAsLogged(btx *bolt.Tx, c Change, first uint64) error {
	if c.Seq < first {
		return nil // trimmed away: nothing to compare with
	}
	v := btx.Bucket(logBucket).Get(seqBytes(c.Seq))
	var have Change
	if v == nil || json.Unmarshal(v, &have) != nil {
		return fmt.Errorf("applying change %d: the log entry is missing or unreadable", c.Seq)
	}
	if have.Bucket != c.Bucket || have.Key != c.Key || have.Delete != c.Delete || !c.Delete && string(have.Value) != string(c.Value) {
		return fmt.Errorf("applying change %d (%s/%s): this store holds a different change %d (%s/%s): %w",
			c.Seq, c.Bucket, c.Key, have.Seq, have.Bucket, have.Key, ErrDiverged)
	}
	return nil
}

// snapshotMagic starts every snapshot. The format: this magic, the length
// of the bbolt file as 8 bytes big-endian, the bbolt file (change log
// included), and the SHA-256 of the bbolt file. The checksum matters:
// bbolt itself has none on its pages, and a damaged page can make its
// consistency check run for hours.
const snapshotMagic = "twinpbx snapshot 1\n"

// maxSnapshot bounds the length a snapshot may claim.
const maxSnapshot = 1 << 40

// Snapshot writes a consistent copy of the whole store to w.
func (s *Store) Snapshot(w io.Writer) error {
	return s.View(func(t *Tx) error {
		size := t.tx.Size()
		hdr := binary.BigEndian.AppendUint64([]byte(snapshotMagic), uint64(size))
		if _, err := w.Write(hdr); err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
		h := sha256.New()
		n, err := t.tx.WriteTo(io.MultiWriter(w, h))
		if err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
		if n != size {
			return fmt.Errorf("writing snapshot: wrote %d bytes of %d", n, size)
		}
		if _, err := w.Write(h.Sum(nil)); err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
		return nil
	})
}

// RestoreSnapshot replaces the whole store with a snapshot read from r. The
// snapshot is written beside the store and checked (length, checksum,
// bbolt's consistency check) first, so a broken or truncated snapshot
// leaves the store as it was. Should the store not reopen after the swap
// (the disk failing underneath), the error says so and every later call
// fails.
func (s *Store) RestoreSnapshot(r io.Reader) error {
	tmp := s.path + ".restore"
	if err := receiveSnapshot(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	if err := checkFile(tmp, s.opts.LockTimeout); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("restoring snapshot: closing store: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return s.reopenAfter(fmt.Errorf("restoring snapshot: %w", err))
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return s.reopenAfter(fmt.Errorf("restoring snapshot: %w", err))
	}
	return s.reopenAfter(nil)
}

// receiveSnapshot reads a snapshot from r into the file path, checking its
// framing and checksum, and syncs the file.
func receiveSnapshot(path string, r io.Reader) error {
	hdr := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("reading snapshot header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return errors.New("not a twinpbx snapshot")
	}
	size := binary.BigEndian.Uint64(hdr[len(snapshotMagic):])
	if size == 0 || size > maxSnapshot {
		return fmt.Errorf("snapshot claims %d bytes", size)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), r, int64(size)); err != nil {
		return fmt.Errorf("reading snapshot body (%d bytes): %w", size, err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, sum); err != nil {
		return fmt.Errorf("reading snapshot checksum: %w", err)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return errors.New("snapshot checksum does not match: damaged in transit")
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, 1)); n != 0 {
		return errors.New("data after the end of the snapshot")
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// reopenAfter reopens the database after RestoreSnapshot closed it.
func (s *Store) reopenAfter(cause error) error {
	db, err := openDB(s.path, s.opts.LockTimeout)
	if err != nil {
		return errors.Join(cause, err)
	}
	s.db = db
	if cause == nil {
		s.log.Info("store restored from snapshot", "file", s.path)
	}
	return cause
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkFile opens a snapshot file read-only on its own, makes sure it is a
// store and runs the consistency check.
func checkFile(path string, timeout time.Duration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("snapshot is corrupt: %v", r)
		}
	}()
	if fi, err := os.Stat(path); err != nil {
		return err
	} else if fi.Size() == 0 {
		return errors.New("snapshot is empty")
	}
	if err := precheck(path); err != nil {
		return fmt.Errorf("snapshot is corrupt: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("snapshot is corrupt or not a store: %w", err)
	}
	defer db.Close()
	if err := check(db, path); err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(metaBucket) == nil || tx.Bucket(logBucket) == nil {
			return errors.New("snapshot is a bbolt file but not a store")
		}
		return nil
	})
}

// Check runs bbolt's consistency check over the whole file and returns
// every problem it finds, joined (nil when the file is sound).
func (s *Store) Check() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return check(s.db, s.path)
}

func check(db *bolt.DB, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checking store %s: %v", path, r)
		}
	}()
	var errs []error
	if err := db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("checking store %s: %w", path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("checking store %s: %w", path, errors.Join(errs...))
	}
	return nil
}

// logBounds reads the last seq assigned and the oldest seq in the log.
func logBounds(tx *bolt.Tx) (seq, first uint64) {
	m := tx.Bucket(metaBucket)
	if m == nil {
		return 0, 0
	}
	return getU64(m, seqKey), getU64(m, firstKey)
}

func seqBytes(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, k []byte, v uint64) error { return b.Put(k, seqBytes(v)) }
