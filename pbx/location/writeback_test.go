package location

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// memStore is a Persister that keeps what was stored and counts the
// writes; fail makes every write fail.
type memStore struct {
	mu      sync.Mutex
	bs      map[string]Binding
	saves   int // bindings written
	batches int // SaveBindings calls
	fail    error
	delay   time.Duration // before every write, to widen races
	// onBatch, when set, runs (once) at the start of a write of more than
	// one binding or of one from Flush, before anything is stored.
	onBatch func()
}

func newMemStore() *memStore { return &memStore{bs: map[string]Binding{}} }

// bindingID keys memStore: a binding by AOR and contact.
func bindingID(aor, contact string) string { return aor + "\x00" + contact }

func (m *memStore) SaveBinding(b Binding) error { return m.SaveBindings([]Binding{b}) }

func (m *memStore) SaveBindings(bs []Binding) error {
	time.Sleep(m.delay)
	m.mu.Lock()
	hook := m.onBatch
	m.onBatch = nil
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.batches++
	for _, b := range bs {
		m.bs[bindingID(b.AOR, b.Contact)] = b
		m.saves++
	}
	return nil
}

func (m *memStore) DeleteBinding(aor, contact string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.bs, bindingID(aor, contact))
	return nil
}

func (m *memStore) LoadBindings() ([]Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Binding
	for _, b := range m.bs {
		out = append(out, b)
	}
	return out, nil
}

func (m *memStore) stored(aor, contact string) (Binding, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bs[bindingID(aor, contact)]
	return b, ok
}

func (m *memStore) writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}

var wb = WriteBack{Interval: time.Second, Headroom: time.Minute}

// newWriteBackService is a Service over a fresh memStore with wb, on a
// clock the test sets through the returned pointer (starting at t0).
func newWriteBackService(t *testing.T, t0 time.Time, wb WriteBack) (*Service, *memStore, *time.Time) {
	t.Helper()
	now := t0
	m := newMemStore()
	s, err := New(m, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	s.SetWriteBack(wb)
	return s, m, &now
}

func TestWriteBack(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	first := Binding{AOR: "100", Contact: "sip:100@192.0.2.5:5062", Source: "udp:192.0.2.5:5062",
		CallID: "c1", CSeq: 1, Expires: t0.Add(time.Hour), UserAgent: "phone"}
	refresh := func(at time.Duration, change func(*Binding)) Binding {
		b := first
		b.CSeq++
		b.Expires = t0.Add(at + time.Hour)
		if change != nil {
			change(&b)
		}
		return b
	}
	tests := []struct {
		name   string
		at     time.Duration // when the refresh comes, after the first REGISTER
		b      Binding
		wb     WriteBack
		behind bool // written at the next Flush, not by Put
	}{
		{name: "refresh, expiry only", at: 30 * time.Minute, b: refresh(30*time.Minute, nil), wb: wb, behind: true},
		{name: "refresh with a new Call-ID", at: 30 * time.Minute, b: refresh(30*time.Minute, func(b *Binding) { b.CallID = "c2" }), wb: wb, behind: true},
		{name: "write-back off", at: 30 * time.Minute, b: refresh(30*time.Minute, nil), wb: WriteBack{}},
		{name: "new source address (NAT rebinding)", at: 30 * time.Minute, b: refresh(30*time.Minute, func(b *Binding) { b.Source = "udp:192.0.2.5:40000" }), wb: wb},
		{name: "new q", at: 30 * time.Minute, b: refresh(30*time.Minute, func(b *Binding) { b.Q = 500 }), wb: wb},
		{name: "new user agent", at: 30 * time.Minute, b: refresh(30*time.Minute, func(b *Binding) { b.UserAgent = "phone 2.0" }), wb: wb},
		{name: "stored copy ends within the headroom", at: 59*time.Minute + 30*time.Second, b: refresh(59*time.Minute+30*time.Second, nil), wb: wb},
		{name: "shorter expiry than stored", at: 10 * time.Minute, b: refresh(10*time.Minute, func(b *Binding) { b.Expires = t0.Add(20 * time.Minute) }), wb: wb},
		{name: "a new contact", at: 30 * time.Minute, b: refresh(30*time.Minute, func(b *Binding) { b.Contact = "sip:100@192.0.2.6" }), wb: wb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, m, now := newWriteBackService(t, t0, tt.wb)
			if err := s.Put(first, 5); err != nil {
				t.Fatal(err)
			}
			*now = t0.Add(tt.at)
			if err := s.Put(tt.b, 5); err != nil {
				t.Fatal(err)
			}
			if got, ok := s.Get(tt.b.AOR, tt.b.Contact); !ok || got.CSeq != tt.b.CSeq || !got.Expires.Equal(tt.b.Expires) {
				t.Fatalf("the table holds %+v (%v), want the refresh", got, ok)
			}
			st, _ := m.stored(tt.b.AOR, tt.b.Contact)
			if written := st.CSeq == tt.b.CSeq; written == tt.behind {
				t.Errorf("written by Put: %v, want %v", written, !tt.behind)
			}
			if got, want := s.Pending(), map[bool]int{true: 1}[tt.behind]; got != want {
				t.Errorf("%d pending, want %d", got, want)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if st, _ := m.stored(tt.b.AOR, tt.b.Contact); st.CSeq != tt.b.CSeq || !st.Expires.Equal(tt.b.Expires) {
				t.Errorf("after Flush the store holds %+v, want the refresh", st)
			}
			if s.Pending() != 0 {
				t.Errorf("%d pending after Flush", s.Pending())
			}
		})
	}
}

// TestWriteBackOrder: a binding removed, or written through, after a
// refresh was put behind is not brought back by the next Flush; a failed
// Flush keeps the refresh for the next one; Reload and Discard drop it.
func TestWriteBackOrder(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	b := Binding{AOR: "100", Contact: "sip:100@192.0.2.5", Source: "udp:192.0.2.5:5060", CallID: "c", CSeq: 1, Expires: t0.Add(time.Hour)}
	later := func(b Binding, cseq uint32, d time.Duration) Binding {
		b.CSeq, b.Expires = cseq, b.Expires.Add(d)
		return b
	}
	setup := func(t *testing.T) (*Service, *memStore, *time.Time) {
		s, m, now := newWriteBackService(t, t0, wb)
		if err := s.Put(b, 5); err != nil {
			t.Fatal(err)
		}
		*now = t0.Add(10 * time.Minute)
		if err := s.Put(later(b, 2, 10*time.Minute), 5); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 1 {
			t.Fatalf("the refresh was not put behind")
		}
		return s, m, now
	}
	t.Run("removed", func(t *testing.T) {
		s, m, _ := setup(t)
		if err := s.Remove(b.AOR, b.Contact); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if st, ok := m.stored(b.AOR, b.Contact); ok {
			t.Errorf("Flush brought back a removed binding: %+v", st)
		}
	})
	t.Run("removed while the flush writes", func(t *testing.T) {
		s, m, _ := setup(t)
		removed := make(chan error, 1)
		m.onBatch = func() {
			// Called from Flush only (the Service writes single bindings
			// through SaveBinding, which also lands here, but no other
			// write runs in this subtest).
			go func() { removed <- s.Remove(b.AOR, b.Contact) }()
			select {
			case err := <-removed: // the removal overtook the flush
				removed <- err
			case <-time.After(50 * time.Millisecond): // it waits for the flush, as it must
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
		if st, ok := m.stored(b.AOR, b.Contact); ok {
			t.Errorf("a removal that raced the flush was undone: %+v stored", st)
		}
	})
	t.Run("written through with a new source", func(t *testing.T) {
		s, m, _ := setup(t)
		n := later(b, 3, 10*time.Minute)
		n.Source = "udp:192.0.2.5:41000"
		if err := s.Put(n, 5); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 3 || st.Source != n.Source {
			t.Errorf("the store holds %+v, want the binding written through", st)
		}
	})
	t.Run("failed flush", func(t *testing.T) {
		s, m, _ := setup(t)
		m.fail = errors.New("disk full")
		if err := s.Flush(); err == nil {
			t.Fatal("Flush reported no error")
		}
		if s.Pending() != 1 {
			t.Fatalf("%d pending after a failed Flush, want 1", s.Pending())
		}
		m.fail = nil
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 2 {
			t.Errorf("the store holds CSeq %d, want 2", st.CSeq)
		}
	})
	t.Run("a refresh of a refresh", func(t *testing.T) {
		s, m, now := setup(t)
		*now = t0.Add(20 * time.Minute)
		if err := s.Put(later(b, 3, 20*time.Minute), 5); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 1 {
			t.Fatalf("%d pending, want 1 (the newest refresh)", s.Pending())
		}
		writes := m.writes()
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := m.writes() - writes; got != 1 {
			t.Errorf("Flush wrote %d bindings, want 1", got)
		}
		if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 3 {
			t.Errorf("the store holds CSeq %d, want 3", st.CSeq)
		}
	})
	t.Run("reload", func(t *testing.T) {
		s, m, _ := setup(t)
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 0 {
			t.Errorf("%d pending after Reload", s.Pending())
		}
		if got, _ := s.Get(b.AOR, b.Contact); got.CSeq != 1 {
			t.Errorf("after Reload the table holds CSeq %d, want the stored 1", got.CSeq)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 1 {
			t.Errorf("the store holds CSeq %d after Reload and Flush, want 1", st.CSeq)
		}
	})
	t.Run("discard", func(t *testing.T) {
		s, _, _ := setup(t)
		if n := s.Discard(); n != 1 {
			t.Errorf("Discard dropped %d, want 1", n)
		}
	})
}

// TestWriteBackConcurrent: puts, refreshes, removals and flushes race;
// once the last Flush is done the store holds exactly the table. Run it
// with -race.
func TestWriteBackConcurrent(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newMemStore()
	m.delay = 20 * time.Microsecond
	s, err := New(m, clock)
	if err != nil {
		t.Fatal(err)
	}
	s.SetWriteBack(wb)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Flush(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 500 {
				aor := fmt.Sprint(100 + r.IntN(4))
				c := fmt.Sprintf("sip:%s@192.0.2.%d", aor, r.IntN(3))
				switch r.IntN(10) {
				case 0:
					if err := s.Remove(aor, c); err != nil {
						t.Error(err)
						return
					}
				default:
					src := "udp:192.0.2.1:5060"
					if r.IntN(8) == 0 {
						src = "udp:192.0.2.1:5061"
					}
					b := Binding{AOR: aor, Contact: c, Source: src, CallID: "c", CSeq: uint32(i), Expires: clock().Add(time.Hour + time.Duration(i)*time.Second)}
					if err := s.Put(b, 0); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	want := map[string]Binding{}
	for _, b := range s.All() {
		want[bindingID(b.AOR, b.Contact)] = b
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.bs) != len(want) {
		t.Errorf("the store holds %d bindings, the table %d", len(m.bs), len(want))
	}
	for id, b := range want {
		if got := m.bs[id]; got != b {
			t.Errorf("%q: stored %+v, table %+v", id, got, b)
		}
	}
}

// TestWriteBackDue: FlushDue writes a refresh only once the stored copy of
// its binding is half way through its lifetime less one flush interval, or
// within the headroom of its end, whichever comes first.
func TestWriteBackDue(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		expires  time.Duration // of the first REGISTER and of the refresh
		refresh  time.Duration // when the refresh comes
		notUntil time.Duration // FlushDue before this writes nothing
	}{
		{name: "an hour, refreshed early", expires: time.Hour, refresh: 10 * time.Minute, notUntil: 30*time.Minute - wb.Interval},
		{name: "an hour, refreshed after half of it", expires: time.Hour, refresh: 40 * time.Minute, notUntil: 40 * time.Minute},
		{name: "two minutes: the half less a flush interval comes first", expires: 2 * time.Minute, refresh: 20 * time.Second, notUntil: time.Minute - wb.Interval},
		{name: "ninety seconds: half before the headroom", expires: 90 * time.Second, refresh: 10 * time.Second, notUntil: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, m, now := newWriteBackService(t, t0, wb)
			b := Binding{AOR: "100", Contact: "sip:100@192.0.2.5", Source: "udp:192.0.2.5:5060", CallID: "c", CSeq: 1, Expires: t0.Add(tt.expires)}
			if err := s.Put(b, 5); err != nil {
				t.Fatal(err)
			}
			*now = t0.Add(tt.refresh)
			r := b
			r.CSeq, r.Expires, r.Updated = 2, now.Add(tt.expires), *now
			if err := s.Put(r, 5); err != nil {
				t.Fatal(err)
			}
			if s.Pending() != 1 {
				t.Fatalf("the refresh was not put behind")
			}
			for *now = t0.Add(tt.refresh); now.Before(t0.Add(tt.notUntil)); *now = now.Add(time.Second) {
				if err := s.FlushDue(); err != nil {
					t.Fatal(err)
				}
				if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 1 {
					t.Fatalf("FlushDue at %v wrote the refresh, want it kept until %v", now.Sub(t0), tt.notUntil)
				}
			}
			if err := s.FlushDue(); err != nil {
				t.Fatal(err)
			}
			if st, _ := m.stored(b.AOR, b.Contact); st.CSeq != 2 || s.Pending() != 0 {
				t.Fatalf("FlushDue at %v left CSeq %d stored and %d pending, want the refresh written", now.Sub(t0), st.CSeq, s.Pending())
			}
		})
	}
}

// TestWriteBackCrash: a phone refreshes every period with the same expiry
// while FlushDue runs every second; whenever the box crashes (or its twin
// takes over with the store as it is), the stored binding is still valid
// when the phone next refreshes, for every period up to the expiry minus
// the headroom. A phone that refreshes after half its expiry has every
// refresh written within a second.
func TestWriteBackCrash(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		expires, period time.Duration
	}{
		{time.Hour, 20 * time.Second}, // a sipp load or a NAT keep-alive by registration
		{time.Hour, 10 * time.Minute},
		{time.Hour, 30 * time.Minute}, // exactly half
		{time.Hour, 31 * time.Minute},
		{time.Hour, 55 * time.Minute},
		{time.Hour, 58 * time.Minute}, // within the headroom: written through
		{2 * time.Minute, 50 * time.Second},
		{3 * time.Minute, 2 * time.Minute},
		{90 * time.Second, 25 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("expires %v every %v", tt.expires, tt.period), func(t *testing.T) {
			s, m, now := newWriteBackService(t, t0, wb)
			b := Binding{AOR: "100", Contact: "sip:100@192.0.2.5", Source: "udp:192.0.2.5:5060", CallID: "c", CSeq: 1}
			next := t0
			refreshes := 0
			for *now = t0; now.Before(t0.Add(4 * tt.expires)); *now = now.Add(time.Second) {
				if !now.Before(next) {
					b.CSeq++
					b.Expires, b.Updated = now.Add(tt.expires), *now
					if err := s.Put(b, 5); err != nil {
						t.Fatal(err)
					}
					next = now.Add(tt.period)
					refreshes++
				}
				if err := s.FlushDue(); err != nil {
					t.Fatal(err)
				}
				// A crash now: the next refresh must find the stored copy alive.
				if st, ok := m.stored(b.AOR, b.Contact); !ok || !st.Expires.After(next) {
					t.Fatalf("a crash at %v leaves the binding stored until %v, but the phone refreshes at %v",
						now.Sub(t0), st.Expires.Sub(t0), next.Sub(t0))
				}
			}
			writes := m.writes()
			if tt.period > tt.expires/2 && writes != refreshes {
				t.Errorf("%d refreshes, %d writes: a phone refreshing after half its expiry must have each written", refreshes, writes)
			}
			if tt.period <= tt.expires/4 && writes > refreshes/2 {
				t.Errorf("%d refreshes, %d writes: frequent refreshes were not coalesced", refreshes, writes)
			}
		})
	}
}
