// Package location is the location service of the registrar: which contacts
// (devices) are registered for which extension, until when, and where their
// requests really came from (for phones behind NAT). The registrar writes it;
// the B2BUA reads it to find the devices to ring. Every change goes through a
// Persister first, so a binding that was acknowledged with 200 OK survives a
// restart and a failover to the twin.
//
// One kind of change may be written behind (see WriteBack): a refresh that
// moves a binding's expiry and changes nothing a call is routed by. Phones
// send far more refreshes than anything else, and a refresh lost in a crash
// leaves the stored binding in place with its earlier expiry, which is still
// ahead: the phone stays reachable. Such a refresh waits until half the
// stored copy's lifetime has passed, so a phone that refreshes more often
// than that costs one write per half lifetime, not one per refresh.
package location

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Binding is one registered contact of one address-of-record.
type Binding struct {
	// AOR is the extension number (the user part of the To URI).
	AOR string `json:"aor"`
	// Contact is the Contact URI as the phone sent it, without header
	// parameters (e.g. "sip:100@192.168.1.20:5062;transport=udp").
	Contact string `json:"contact"`
	// Source is where the REGISTER really came from, "transport:ip:port"
	// (e.g. "udp:203.0.113.7:40211"). Requests to the phone are sent there
	// (RFC 3581 symmetric response routing / NAT traversal).
	Source string `json:"source"`
	// CallID and CSeq of the REGISTER that made or refreshed the binding,
	// to order refreshes per RFC 3261 10.3 step 7.
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Expires is the absolute time the binding ends.
	Expires time.Time `json:"expires"`
	// Q is the contact's preference (0..1000 as q*1000; 0 means not given).
	Q int `json:"q,omitempty"`
	// UserAgent as the phone named itself, for status pages.
	UserAgent string `json:"user_agent,omitempty"`
	// Updated is when the binding was last written (newest wins on merge).
	Updated time.Time `json:"updated"`
	// Holder is the site member that holds the binding, for a binding of
	// another box of a site cluster (Shared); empty for this box's own.
	Holder string `json:"holder,omitempty"`
}

// Key identifies a binding within its AOR: the contact URI.
func (b Binding) Key() string { return b.Contact }

// Persister stores bindings durably. Save and Delete must return only after
// the change is on disk (and, on a twin pair, acknowledged by the twin).
// The Service calls them concurrently for different AORs (never for the
// same AOR at once), so that a store can commit them together.
type Persister interface {
	SaveBinding(b Binding) error
	DeleteBinding(aor, contact string) error
	LoadBindings() ([]Binding, error)
}

// BatchPersister is a Persister that can store many bindings in one
// durable write; the write-behind of refreshes uses it when it can.
type BatchPersister interface {
	SaveBindings(bs []Binding) error
}

// WriteBack says how refreshes are persisted. The zero value writes every
// change before Put returns.
//
// A refresh that changes only the expiry, Call-ID and CSeq of a binding is
// kept in memory until one Interval before the stored copy of the binding
// is half way through its lifetime (from its Updated to its Expires), or
// Headroom before its end if that comes first, and then written by the
// next FlushDue, which comes by the half. Why half: a phone that refreshes
// at least every half of its expiry then always refreshes again before the
// stored copy ends, whenever a crash or a failover comes (the stored copy
// still has half its lifetime ahead when the refreshes since are lost).
// Why an Interval before: a refresh that arrives after the half, and is
// lost before the next FlushDue, must find a stored copy written by the
// half, or the phone's next refresh (up to half its expiry later) comes
// after that copy ends (TestWriteBackCrashBetweenFlushes). A phone that
// refreshes later than the half finds the due time passed at its every
// refresh, which is then written within Interval, as each refresh was
// before.
type WriteBack struct {
	// Interval: how often the owner calls FlushDue. Zero: refreshes are
	// written at once.
	Interval time.Duration
	// Headroom: a refresh is written behind only while the stored copy of
	// the binding stays valid at least this much longer, so that losing
	// the refresh (a crash before the next Flush) cannot make the phone
	// unreachable before it refreshes again.
	Headroom time.Duration
}

// Shared is a location table beyond this box: the registrations held by
// the other boxes of a site cluster (docs/SITE.md). A Persister that also
// implements Shared is consulted by Lookup when this box holds no live
// binding of the AOR, so a call reaching this box finds a phone registered
// on another. The table is told of this box's own changes through the
// Persister's writes. Standalone boxes and twin pairs do not implement it,
// and their lookups stay local.
type Shared interface {
	// SharedLookup returns the live bindings of aor held by other boxes.
	// It must be cheap and must not block on the network.
	SharedLookup(aor string) []Binding
}

// ErrTooManyContacts is returned when an AOR would exceed its contact limit.
var ErrTooManyContacts = errors.New("too many contacts registered for this extension")

// Service is the in-memory location table backed by a Persister. It is safe
// for concurrent use.
type Service struct {
	p   Persister
	now func() time.Time
	// shared is p as a Shared table, or nil.
	shared Shared

	// aorMu serialises the writes of one AOR (by hash) from the limit
	// check to the table update; mu is held only for the table itself,
	// not while persisting, so writes of different AORs reach the
	// Persister together.
	aorMu [256]sync.Mutex
	// mu guards byAOR, the entries in it, dirty and nextDue.
	mu    sync.RWMutex
	byAOR map[string]entries // by AOR
	// dirty counts the entries whose refresh waits to be written.
	dirty int
	// nextDue is no later than the earliest due time of a waiting
	// refresh (zero: unknown), so that FlushDue looks through the table
	// only when something may be due.
	nextDue time.Time

	wb WriteBack
	// flushMu orders writes behind against writes through: Flush holds it
	// exclusively, every write through the Persister shares it, so a
	// refresh waiting to be written is written either wholly before a
	// later write of the same binding or not at all.
	flushMu sync.RWMutex
}

// entries are the bindings of one AOR: a handful, found by contact.
type entries []*entry

// find returns the index of contact's entry, -1 if there is none.
func (es entries) find(contact string) int {
	for i, e := range es {
		if e.b.Contact == contact {
			return i
		}
	}
	return -1
}

// get returns contact's entry, nil if there is none.
func (es entries) get(contact string) *entry {
	if i := es.find(contact); i >= 0 {
		return es[i]
	}
	return nil
}

// entry is one binding in the table. A refresh written behind changes it
// in place: no map is written on the way.
type entry struct {
	b Binding
	// stored is the lifetime of the stored copy, which differs from b's
	// while a refresh waits to be written.
	stored lifetime
	// dirty: b is a refresh not written yet, due by due.
	dirty bool
	due   time.Time
}

// lifetime is the span a stored copy of a binding is valid for.
type lifetime struct {
	from, until time.Time
}

func lifetimeOf(b Binding) lifetime { return lifetime{from: b.Updated, until: b.Expires} }

// due is when a refresh of the copy must be written: one flush interval
// before half way through it, so that the flush that writes it comes by
// the half (a phone's next refresh may come a whole half after one that
// arrived just after a later flush), and at least the headroom before its
// end.
func (l lifetime) due(wb WriteBack) time.Time {
	half := l.until
	if l.from.Before(l.until) {
		half = l.from.Add(l.until.Sub(l.from) / 2)
	}
	return minTime(half.Add(-wb.Interval), l.until.Add(-wb.Headroom))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// aorLock returns the lock serialising the writes of aor.
func (s *Service) aorLock(aor string) *sync.Mutex {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(aor); i++ {
		h = (h ^ uint32(aor[i])) * 16777619
	}
	return &s.aorMu[h%uint32(len(s.aorMu))]
}

// New loads the persisted bindings (dropping expired ones) and returns the
// service. now may be nil (time.Now).
func New(p Persister, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	s := &Service{p: p, now: now, byAOR: map[string]entries{}}
	s.shared, _ = p.(Shared)
	bs, err := p.LoadBindings()
	if err != nil {
		return nil, fmt.Errorf("loading location bindings: %w", err)
	}
	t := now()
	for _, b := range bs {
		if !b.Expires.After(t) {
			if err := p.DeleteBinding(b.AOR, b.Contact); err != nil {
				return nil, fmt.Errorf("deleting expired binding %s of %s: %w", b.Contact, b.AOR, err)
			}
			continue
		}
		s.put(b)
	}
	return s, nil
}

// Reload replaces the in-memory table with the live bindings the
// Persister holds now. A twin's standby, whose store is written by
// replication underneath the table, calls it when it takes over. Expired
// bindings are skipped but not deleted: Expire does that.
func (s *Service) Reload() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	bs, err := s.p.LoadBindings()
	if err != nil {
		return fmt.Errorf("reloading location bindings: %w", err)
	}
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byAOR = map[string]entries{}
	s.dirty, s.nextDue = 0, time.Time{}
	for _, b := range bs {
		if b.Expires.After(t) {
			s.put(b)
		}
	}
	return nil
}

// put sets b in the table as stored, with its own expiry. mu is held.
func (s *Service) put(b Binding) {
	es := s.byAOR[b.AOR]
	e := es.get(b.Key())
	if e == nil {
		e = new(entry)
		s.byAOR[b.AOR] = append(es, e)
	} else if e.dirty {
		s.dirty--
	}
	*e = entry{b: b, stored: lifetimeOf(b)}
}

// SetWriteBack sets how refreshes are persisted from now on. With a
// non-zero Interval the owner must call FlushDue every Interval while the
// table is the one being served, and Flush before it stops.
func (s *Service) SetWriteBack(wb WriteBack) {
	s.aorLockAll()
	defer s.aorUnlockAll()
	s.wb = wb
}

func (s *Service) aorLockAll() {
	for i := range s.aorMu {
		s.aorMu[i].Lock()
	}
}

func (s *Service) aorUnlockAll() {
	for i := range s.aorMu {
		s.aorMu[i].Unlock()
	}
}

// sameRoute reports whether a and b differ in nothing a request to the
// phone is routed or ordered by, only in the expiry and the REGISTER that
// set it.
func sameRoute(a, b Binding) bool {
	return a.AOR == b.AOR && a.Contact == b.Contact && a.Source == b.Source && a.Q == b.Q && a.UserAgent == b.UserAgent
}

// Pending returns how many refreshes wait to be written.
func (s *Service) Pending() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dirty
}

// Flush writes every refresh that waits, in one write when the Persister
// can. On failure they stay pending (unless written through meanwhile)
// and the error is returned.
func (s *Service) Flush() error { return s.flush(time.Time{}) }

// FlushDue writes the refreshes that wait and are due (see WriteBack), as
// Flush does.
func (s *Service) FlushDue() error { return s.flush(s.now()) }

// flush writes the refreshes due by t that wait, or all for a zero t.
func (s *Service) flush(t time.Time) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if s.dirty == 0 || !t.IsZero() && t.Before(s.nextDue) {
		s.mu.Unlock()
		return nil
	}
	var batch []Binding
	var next time.Time
	for _, es := range s.byAOR {
		for _, e := range es {
			switch {
			case !e.dirty:
			case t.IsZero() || !e.due.After(t):
				batch = append(batch, e.b)
				e.dirty = false
				s.dirty--
			case next.IsZero() || e.due.Before(next):
				next = e.due
			}
		}
	}
	s.nextDue = next
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var err error
	if bp, ok := s.p.(BatchPersister); ok {
		err = bp.SaveBindings(batch)
	} else {
		for _, b := range batch {
			if err = s.p.SaveBinding(b); err != nil {
				break
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Waiting again, unless a newer refresh waits already. Nothing
		// else changed them meanwhile: removals and writes through wait
		// for flushMu.
		for _, b := range batch {
			if e := s.byAOR[b.AOR].get(b.Key()); e != nil && !e.dirty {
				e.dirty = true
				s.dirty++
			}
		}
		s.nextDue = time.Time{}
		return fmt.Errorf("writing %d refreshed bindings: %w", len(batch), err)
	}
	for _, b := range batch {
		if e := s.byAOR[b.AOR].get(b.Key()); e != nil {
			e.stored = lifetimeOf(b)
		}
	}
	return nil
}

// Discard forgets the refreshes that wait to be written: a box that stops
// serving leaves the bindings to its twin, whose stored copies are still
// valid (see WriteBack).
func (s *Service) Discard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dirty
	for _, es := range s.byAOR {
		for _, e := range es {
			e.dirty = false
		}
	}
	s.dirty, s.nextDue = 0, time.Time{}
	return n
}

// Lookup returns the live bindings of aor, highest q first, then newest.
// When this box holds none and its Persister is a Shared table, it returns
// the bindings other boxes hold.
func (s *Service) Lookup(aor string) []Binding { return s.LookupAppend(nil, aor) }

// LookupAppend is Lookup appending to out (so that a caller can give
// room it owns).
func (s *Service) LookupAppend(out []Binding, aor string) []Binding {
	t := s.now()
	start := len(out)
	s.mu.RLock()
	for _, e := range s.byAOR[aor] {
		if e.b.Expires.After(t) {
			out = append(out, e.b)
		}
	}
	s.mu.RUnlock()
	if len(out) == start && s.shared != nil {
		out = append(out, s.shared.SharedLookup(aor)...)
	}
	SortBindings(out[start:])
	return out
}

// SortBindings orders bindings as Lookup returns them: highest q first,
// then newest, then by contact.
func SortBindings(bs []Binding) {
	if len(bs) < 2 {
		return
	}
	slices.SortFunc(bs, func(a, b Binding) int {
		if a.Q != b.Q {
			return cmp.Compare(b.Q, a.Q)
		}
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return strings.Compare(a.Contact, b.Contact)
	})
}

// Get returns the binding of aor for contact, if it is live.
func (s *Service) Get(aor, contact string) (Binding, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.byAOR[aor].get(contact)
	if e == nil || !e.b.Expires.After(s.now()) {
		return Binding{}, false
	}
	return e.b, true
}

// Put adds or refreshes a binding, persisting it first, or, for a refresh
// that may be written behind (WriteBack), at the next Flush. max bounds
// the number of live contacts of the AOR (0: no bound).
func (s *Service) Put(b Binding, max int) error {
	l := s.aorLock(b.AOR)
	l.Lock()
	defer l.Unlock()
	t := s.now()
	if b.Updated.IsZero() {
		b.Updated = t
	}
	s.mu.Lock()
	es := s.byAOR[b.AOR]
	if max > 0 {
		n := 0
		for _, o := range es {
			if o.b.Contact != b.Key() && o.b.Expires.After(t) {
				n++
			}
		}
		if n >= max {
			s.mu.Unlock()
			return ErrTooManyContacts
		}
	}
	if e := es.get(b.Key()); e != nil && s.wb.Interval > 0 && sameRoute(e.b, b) && e.b.Expires.After(t) &&
		e.stored.until.Sub(t) >= s.wb.Headroom && !b.Expires.Before(e.stored.until) {
		due := e.stored.due(s.wb)
		if !e.dirty {
			s.dirty++
		}
		e.b, e.dirty, e.due = b, true, due
		if due.Before(s.nextDue) {
			s.nextDue = due
		}
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	if err := s.p.SaveBinding(b); err != nil {
		return fmt.Errorf("saving binding %s of %s: %w", b.Contact, b.AOR, err)
	}
	s.mu.Lock()
	s.put(b)
	s.mu.Unlock()
	return nil
}

// Remove deletes one binding, persisting the removal first.
func (s *Service) Remove(aor, contact string) error {
	_, err := s.remove(aor, contact, time.Time{})
	return err
}

// remove deletes one binding, persisting the removal first. With a
// non-zero deadAt it deletes the binding only if it has expired by then:
// a refresh that overtook Expire's scan keeps it. It reports whether it
// deleted one.
func (s *Service) remove(aor, contact string, deadAt time.Time) (bool, error) {
	l := s.aorLock(aor)
	l.Lock()
	defer l.Unlock()
	s.mu.RLock()
	e := s.byAOR[aor].get(contact)
	gone := e == nil || !deadAt.IsZero() && e.b.Expires.After(deadAt)
	s.mu.RUnlock()
	if gone {
		return false, nil
	}
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	if err := s.p.DeleteBinding(aor, contact); err != nil {
		return false, fmt.Errorf("deleting binding %s of %s: %w", contact, aor, err)
	}
	s.mu.Lock()
	es := s.byAOR[aor]
	if i := es.find(contact); i >= 0 {
		if es[i].dirty {
			s.dirty--
		}
		es = slices.Delete(es, i, i+1)
	}
	if len(es) == 0 {
		delete(s.byAOR, aor)
	} else {
		s.byAOR[aor] = es
	}
	s.mu.Unlock()
	return true, nil
}

// RemoveAll deletes every binding of aor ("Contact: *" with Expires: 0).
func (s *Service) RemoveAll(aor string) error {
	s.mu.RLock()
	var keys []string
	for _, e := range s.byAOR[aor] {
		keys = append(keys, e.b.Contact)
	}
	s.mu.RUnlock()
	for _, k := range keys {
		if err := s.Remove(aor, k); err != nil {
			return err
		}
	}
	return nil
}

// Expire removes every binding whose time has passed and returns how many
// it removed (before an error, too).
// The PBX calls it periodically.
func (s *Service) Expire() (int, error) {
	t := s.now()
	s.mu.RLock()
	var dead []Binding
	for _, es := range s.byAOR {
		for _, e := range es {
			if !e.b.Expires.After(t) {
				dead = append(dead, e.b)
			}
		}
	}
	s.mu.RUnlock()
	n := 0
	for _, b := range dead {
		removed, err := s.remove(b.AOR, b.Contact, t)
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// All returns every live binding, ordered by AOR then contact, for status.
func (s *Service) All() []Binding {
	t := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Binding{}
	for _, es := range s.byAOR {
		for _, e := range es {
			if e.b.Expires.After(t) {
				out = append(out, e.b)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].AOR != out[j].AOR {
			return out[i].AOR < out[j].AOR
		}
		return out[i].Contact < out[j].Contact
	})
	return out
}
