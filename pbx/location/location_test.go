package location

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// overlapStore is a Persister that records how many saves of each AOR, and
// in all, run at the same time. A save can be made to wait until a number
// of saves are in flight together.
type overlapStore struct {
	mu       sync.Mutex
	inFlight map[string]int
	total    int
	maxAOR   int // most saves of one AOR ever in flight together
	waitFor  int // a save waits until this many are in flight (0: no wait)
	bs       map[string]Binding
}

func newOverlapStore(waitFor int) *overlapStore {
	return &overlapStore{inFlight: map[string]int{}, waitFor: waitFor, bs: map[string]Binding{}}
}

func (s *overlapStore) SaveBinding(b Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[b.AOR]++
	s.total++
	s.maxAOR = max(s.maxAOR, s.inFlight[b.AOR])
	deadline := time.Now().Add(5 * time.Second)
	for s.total < s.waitFor {
		if time.Now().After(deadline) {
			s.inFlight[b.AOR]--
			s.total--
			return fmt.Errorf("only %d saves in flight together, want %d", s.total+1, s.waitFor)
		}
		s.mu.Unlock()
		time.Sleep(time.Millisecond) // poll with a deadline
		s.mu.Lock()
	}
	s.waitFor = 0 // the meeting happened: let everything pass from now on
	s.bs[b.AOR+"|"+b.Contact] = b
	s.inFlight[b.AOR]--
	s.total--
	return nil
}

func (s *overlapStore) DeleteBinding(aor, contact string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.bs, aor+"|"+contact)
	return nil
}

func (s *overlapStore) LoadBindings() ([]Binding, error) { return nil, nil }

// TestPutPersistsAORsTogether: saves of different AORs are not serialised
// by the Service, so a store can commit them in one go.
func TestPutPersistsAORsTogether(t *testing.T) {
	const n = 8
	st := newOverlapStore(n)
	s, err := New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.Put(Binding{AOR: fmt.Sprint(100 + i), Contact: "sip:a@192.0.2.1", Expires: now.Add(time.Hour)}, 1)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(s.All()); got != n {
		t.Errorf("%d bindings in the table, want %d", got, n)
	}
}

// TestPutKeepsTheLimitPerAOR: concurrent writes of one AOR are serialised
// from the limit check to the table update, so the limit holds and the
// Persister never sees two of them at once.
func TestPutKeepsTheLimitPerAOR(t *testing.T) {
	st := newOverlapStore(0)
	s, err := New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const writers, limit = 30, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aor := "100"
			if i%3 == 0 {
				aor = "101" // another AOR in between, sharing nothing
			}
			err := s.Put(Binding{AOR: aor, Contact: fmt.Sprintf("sip:%d@192.0.2.1", i), Expires: now.Add(time.Hour)}, limit)
			switch {
			case errors.Is(err, ErrTooManyContacts):
				mu.Lock()
				refused++
				mu.Unlock()
			case err != nil:
				t.Error(err)
			}
			if i%5 == 0 {
				if err := s.Remove(aor, fmt.Sprintf("sip:%d@192.0.2.1", i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if st.maxAOR != 1 {
		t.Errorf("the store saw %d saves of one AOR at once, want 1", st.maxAOR)
	}
	for _, aor := range []string{"100", "101"} {
		if n := len(s.Lookup(aor)); n > limit {
			t.Errorf("%s has %d bindings, limit %d", aor, n, limit)
		}
	}
	if len(st.bs) != len(s.All()) {
		t.Errorf("store holds %d bindings, table %d", len(st.bs), len(s.All()))
	}
	if refused == 0 {
		t.Error("no Put was refused: the limit was never tested")
	}
}

func TestLookupOrder(t *testing.T) {
	now := time.Unix(100000, 0)
	st := newOverlapStore(0)
	s, err := New(st, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	bind := func(contact string, q int, updated, expires time.Duration) Binding {
		return Binding{AOR: "100", Contact: contact, Q: q, Updated: now.Add(updated), Expires: now.Add(expires)}
	}
	for _, b := range []Binding{
		bind("sip:old@a", 0, -time.Hour, time.Hour),
		bind("sip:new@a", 0, -time.Minute, time.Hour),
		bind("sip:preferred@a", 900, -2*time.Hour, time.Hour),
		bind("sip:tie-b@a", 0, -time.Hour, time.Hour),
		bind("sip:tie-a@a", 0, -time.Hour, time.Hour),
		bind("sip:expired@a", 1000, 0, -time.Second),
	} {
		if err := st.SaveBinding(b); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		s.put(b)
		s.mu.Unlock()
	}
	var got []string
	for _, b := range s.Lookup("100") {
		got = append(got, b.Contact)
	}
	want := []string{"sip:preferred@a", "sip:new@a", "sip:old@a", "sip:tie-a@a", "sip:tie-b@a"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Lookup order %v, want %v", got, want)
	}
	if bs := s.Lookup("999"); len(bs) != 0 {
		t.Errorf("Lookup of an unknown AOR gave %v", bs)
	}
}
