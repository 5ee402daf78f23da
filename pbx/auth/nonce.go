package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"time"
)

// A nonce is base64url(issued | salt | mac): issued is the issue time in
// Unix seconds (8 bytes, big endian), salt 8 random bytes so that two
// challenges in the same second differ (the nonce-count table is keyed by
// salt: nonceID), and mac the first 16 bytes of HMAC-SHA256(key, issued|salt|realm).
// Nothing is kept per nonce until it is first answered, so nonces survive
// a restart and are accepted by the twin, which shares the key.
const (
	nonceTimeLen = 8
	nonceSaltLen = 8
	nonceMACLen  = 16
	nonceRawLen  = nonceTimeLen + nonceSaltLen + nonceMACLen
	// nonceTextLen is the length of a nonce as sent: base64 without
	// padding.
	nonceTextLen = (nonceRawLen*8 + 5) / 6
)

var errBadNonce = errors.New("nonce was not issued by this realm")

type nonces struct {
	realm []byte
	macs  *sync.Pool // of *macState under the key, reused
}

// macState is an HMAC-SHA256 with room for a raw nonce and a sum, kept
// together so that none of them is allocated per nonce (a slice passed
// to the hash escapes).
type macState struct {
	h   hash.Hash
	raw [nonceRawLen]byte
	sum [sha256.Size]byte
}

func newNonces(key []byte, realm string) nonces {
	key = append([]byte(nil), key...)
	return nonces{realm: []byte(realm), macs: &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }}}
}

// mac returns the MAC of m.raw's issue time and salt.
func (n nonces) mac(m *macState) []byte {
	m.h.Reset()
	m.h.Write(m.raw[:nonceTimeLen+nonceSaltLen])
	m.h.Write(n.realm)
	return m.h.Sum(m.sum[:0])[:nonceMACLen]
}

// issue writes a fresh nonce stamped with t into text and returns it.
func (n nonces) issue(t time.Time, text *[nonceTextLen]byte) []byte {
	m := n.macs.Get().(*macState)
	defer n.macs.Put(m)
	binary.BigEndian.PutUint64(m.raw[:nonceTimeLen], uint64(t.Unix()))
	_, _ = rand.Read(m.raw[nonceTimeLen : nonceTimeLen+nonceSaltLen]) // crypto/rand never fails on Linux
	copy(m.raw[nonceTimeLen+nonceSaltLen:], n.mac(m))
	base64.RawURLEncoding.Encode(text[:], m.raw[:])
	return text[:]
}

// nonceID names a nonce in the nonce-count table: its salt. The MAC
// covers it, so a verified nonce's ID is one we issued, and IDs of the
// nonces issued meet by chance once in 2^64.
type nonceID uint64

// verify checks that s was issued with our key and realm and returns when,
// and its ID.
func (n nonces) verify(s string) (time.Time, nonceID, error) {
	if len(s) != nonceTextLen {
		return time.Time{}, 0, errBadNonce
	}
	var text [nonceTextLen]byte
	copy(text[:], s)
	m := n.macs.Get().(*macState)
	defer n.macs.Put(m)
	if k, err := base64.RawURLEncoding.Decode(m.raw[:], text[:]); err != nil || k != nonceRawLen {
		return time.Time{}, 0, errBadNonce
	}
	if !hmac.Equal(m.raw[nonceTimeLen+nonceSaltLen:], n.mac(m)) {
		return time.Time{}, 0, errBadNonce
	}
	sec := binary.BigEndian.Uint64(m.raw[:nonceTimeLen])
	if sec > 1<<62 {
		return time.Time{}, 0, errBadNonce
	}
	return time.Unix(int64(sec), 0), nonceID(binary.BigEndian.Uint64(m.raw[nonceTimeLen:])), nil
}

// ncWindow is how many nonce-counts below the highest one seen are still
// accepted once (out-of-order requests sharing a nonce).
const ncWindow = 64

type ncState struct {
	issued  time.Time
	highest uint32
	seen    uint64 // bit i: highest-i was used
}

// ncTable remembers which nonce-counts were used per nonce, for at most
// max nonces. When full it drops the entry that was added first and
// remembers the newest issue time it ever dropped: a nonce issued at or
// before that time and no longer in the table is answered as stale, so
// dropping an entry never reopens it for replay.
type ncTable struct {
	mu sync.Mutex
	// slots is a ring of max entries in insertion order; entries finds
	// a nonce's slot.
	slots   []ncSlot
	entries map[nonceID]int
	next    int
	dropped time.Time
}

type ncSlot struct {
	id   nonceID
	used bool
	ncState
}

func newNCTable(max int) *ncTable {
	return &ncTable{slots: make([]ncSlot, max), entries: make(map[nonceID]int, max)}
}

// use records nc for the nonce id and reports whether it is fresh (not a
// replay and not possibly forgotten).
func (t *ncTable) use(id nonceID, issued time.Time, nc uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.entries[id]; ok {
		return t.slots[i].advance(nc)
	}
	if !issued.After(t.dropped) {
		return false
	}
	slot := &t.slots[t.next]
	if slot.used {
		if slot.issued.After(t.dropped) {
			t.dropped = slot.issued
		}
		delete(t.entries, slot.id)
	}
	*slot = ncSlot{id: id, used: true, ncState: ncState{issued: issued, highest: nc, seen: 1}}
	t.entries[id] = t.next
	t.next = (t.next + 1) % len(t.slots)
	return true
}

// advance records nc as used and reports whether it was fresh.
func (st *ncState) advance(nc uint32) bool {
	switch {
	case nc > st.highest:
		shift := nc - st.highest
		if shift >= ncWindow {
			st.seen = 0
		} else {
			st.seen <<= shift
		}
		st.seen |= 1
		st.highest = nc
		return true
	case st.highest-nc >= ncWindow:
		return false
	default:
		bit := uint64(1) << (st.highest - nc)
		if st.seen&bit != 0 {
			return false
		}
		st.seen |= bit
		return true
	}
}
