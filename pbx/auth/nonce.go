package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"strings"
	"sync"
	"time"
)

// A nonce is base64url(issued | salt | mac): issued is the issue time in
// Unix seconds (8 bytes, big endian), salt 8 random bytes so that two
// challenges in the same second differ (the nonce-count table is keyed by
// nonce), and mac the first 16 bytes of HMAC-SHA256(key, issued|salt|realm).
// Nothing is kept per nonce until it is first answered, so nonces survive
// a restart and are accepted by the twin, which shares the key.
const (
	nonceTimeLen = 8
	nonceSaltLen = 8
	nonceMACLen  = 16
	nonceRawLen  = nonceTimeLen + nonceSaltLen + nonceMACLen
)

var errBadNonce = errors.New("nonce was not issued by this realm")

type nonces struct {
	realm string
	macs  *sync.Pool // of hash.Hash: HMAC-SHA256 under the key, reused
}

func newNonces(key []byte, realm string) nonces {
	key = append([]byte(nil), key...)
	return nonces{realm: realm, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// mac puts the MAC of head into out.
func (n nonces) mac(head []byte, out *[nonceMACLen]byte) {
	m := n.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(head)
	_, _ = io.WriteString(m, n.realm)
	var sum [sha256.Size]byte
	copy(out[:], m.Sum(sum[:0]))
	n.macs.Put(m)
}

// issue returns a fresh nonce stamped with t.
func (n nonces) issue(t time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(t.Unix()))
	_, _ = rand.Read(raw[nonceTimeLen : nonceTimeLen+nonceSaltLen]) // crypto/rand never fails on Linux
	n.mac(raw[:nonceTimeLen+nonceSaltLen], (*[nonceMACLen]byte)(raw[nonceTimeLen+nonceSaltLen:]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// verify checks that s was issued with our key and realm and returns when.
func (n nonces) verify(s string) (time.Time, error) {
	if base64.RawURLEncoding.DecodedLen(len(s)) != nonceRawLen {
		return time.Time{}, errBadNonce
	}
	var raw [nonceRawLen]byte
	if k, err := base64.RawURLEncoding.Decode(raw[:], []byte(s)); err != nil || k != nonceRawLen {
		return time.Time{}, errBadNonce
	}
	var mac [nonceMACLen]byte
	n.mac(raw[:nonceTimeLen+nonceSaltLen], &mac)
	if !hmac.Equal(raw[nonceTimeLen+nonceSaltLen:], mac[:]) {
		return time.Time{}, errBadNonce
	}
	sec := binary.BigEndian.Uint64(raw[:nonceTimeLen])
	if sec > 1<<62 {
		return time.Time{}, errBadNonce
	}
	return time.Unix(int64(sec), 0), nil
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
	mu      sync.Mutex
	max     int
	entries map[string]*ncState
	order   []string // insertion order, a ring of max entries
	next    int
	dropped time.Time
}

func newNCTable(max int) *ncTable {
	return &ncTable{max: max, entries: make(map[string]*ncState, max), order: make([]string, max)}
}

// use records nc for nonce and reports whether it is fresh (not a replay
// and not possibly forgotten).
func (t *ncTable) use(nonce string, issued time.Time, nc uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.entries[nonce]
	if !ok {
		if !issued.After(t.dropped) {
			return false
		}
		if old := t.order[t.next]; old != "" {
			if e, ok := t.entries[old]; ok {
				if e.issued.After(t.dropped) {
					t.dropped = e.issued
				}
				delete(t.entries, old)
			}
		}
		// A copy: nonce may be a piece of the whole request (regwire),
		// which the table would otherwise keep alive.
		nonce = strings.Clone(nonce)
		t.order[t.next] = nonce
		t.next = (t.next + 1) % t.max
		t.entries[nonce] = &ncState{issued: issued, highest: nc, seen: 1}
		return true
	}
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
