package voicemail

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMailboxLimit(t *testing.T) {
	var changes []string
	m := NewMailboxes(NewMemStore(), func() int { return 3 }, func(box string) { changes = append(changes, box) })
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	save := func(i int) Message {
		t.Helper()
		msg, err := m.Save(Message{Mailbox: "201", Caller: "202", Time: t0.Add(time.Duration(i) * time.Minute), Codec: PCMU, Duration: time.Second}, []byte{byte(i), 1, 2})
		if err != nil {
			t.Fatalf("saving message %d: %v", i, err)
		}
		return msg
	}
	m1, m2, m3 := save(1), save(2), save(3)
	if _, err := m.Save(Message{Mailbox: "201", Time: t0.Add(time.Hour), Codec: PCMU}, []byte{9}); !errors.Is(err, ErrFull) {
		t.Fatalf("a fourth new message: %v, want ErrFull", err)
	}
	// Listening to the two oldest makes them the ones to go, oldest first.
	for _, x := range []Message{m2, m1} {
		if err := m.MarkOld(x); err != nil {
			t.Fatal(err)
		}
	}
	m4 := save(4)
	list, err := m.List("201")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	want := []string{m4.ID, m3.ID, m2.ID} // new newest first, then old
	if len(ids) != 3 || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Fatalf("mailbox holds %v, want %v", ids, want)
	}
	sum, _ := m.Summary("201")
	if sum.New != 2 || sum.Old != 1 {
		t.Errorf("summary %+v, want 2 new 1 old", sum)
	}
	if a, err := m.Audio(list[0]); err != nil || a[0] != 4 {
		t.Errorf("audio of the newest: %v %v", a, err)
	}
	if err := m.Delete(m3); err != nil {
		t.Fatal(err)
	}
	if sum, _ := m.Summary("201"); sum.New != 1 {
		t.Errorf("after delete: %+v", sum)
	}
	if other, _ := m.List("20"); len(other) != 0 {
		t.Errorf("mailbox 20 sees %d messages of 201", len(other))
	}
	if len(changes) != 7 {
		t.Errorf("%d change notices, want 7 (4 saves, 2 marks, 1 delete, 0 for the refused one)", len(changes))
	}
}

func TestMailboxChecksum(t *testing.T) {
	st := NewMemStore()
	m := NewMailboxes(st, func() int { return 10 }, nil)
	msg, err := m.Save(Message{Mailbox: "201", Time: time.Now(), Codec: PCMA}, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	st.audio[memKey("201", msg.ID)][0] = 9
	if _, err := m.Audio(msg); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupt audio: %v, want ErrChecksum", err)
	}
	if err := m.MarkOld(Message{Mailbox: "201", ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("marking a missing message: %v", err)
	}
}

// TestSummaryKept: the counts kept in memory stay those of the records
// while deposits, listens and deletes run at once (run with -race), and a
// diversion's Summary then reads no records.
func TestSummaryKept(t *testing.T) {
	st := &countingStore{MemStore: NewMemStore()}
	m := NewMailboxes(st, func() int { return 20 }, nil)
	boxes := []string{"201", "202"}
	for _, b := range boxes {
		if _, err := m.Summary(b); err != nil { // loaded before the writes
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			box := boxes[w%len(boxes)]
			for i := range 40 {
				msg, err := m.Save(Message{Mailbox: box, Caller: "300", Time: time.Now(), Codec: PCMU, Duration: time.Second}, make([]byte, 100+w*10+i))
				if errors.Is(err, ErrFull) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				switch i % 4 {
				case 0:
					if err := m.Delete(msg); err != nil {
						t.Error(err)
					}
				case 1:
					if err := m.MarkOld(msg); err != nil {
						t.Error(err)
					}
				case 2:
					_ = m.MarkOld(msg)
					if err := m.Delete(msg); err != nil { // a stale copy: New still true
						t.Error(err)
					}
				}
				if _, err := m.Summary(box); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, b := range boxes {
		got, err := m.Summary(b)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := m.List(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := summarize(msgs); got != want {
			t.Errorf("mailbox %s: kept %+v, records say %+v", b, got, want)
		}
		if got.New+got.Old == 0 || got.Bytes == 0 {
			t.Errorf("mailbox %s: %+v, want messages left", b, got)
		}
	}
	before := st.lists.Load()
	for range 10 {
		if _, err := m.Summary("201"); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.lists.Load() - before; n != 0 {
		t.Errorf("10 summaries read the records %d times, want 0", n)
	}
}

// TestSummaryForget: a record written past Mailboxes (replicated from the
// twin) counts after Forget, or once the kept counts are too old.
func TestSummaryForget(t *testing.T) {
	st := NewMemStore()
	m := NewMailboxes(st, func() int { return 20 }, nil)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m.now = func() time.Time { return now }
	if s, _ := m.Summary("201"); s.New != 0 {
		t.Fatalf("empty mailbox: %+v", s)
	}
	put := func(id string) {
		t.Helper()
		meta, _ := json.Marshal(Message{ID: id, Mailbox: "201", New: true, Size: 3})
		if err := st.PutVoicemail("201", id, meta, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	if s, _ := m.Summary("201"); s.New != 0 {
		t.Fatalf("a write past the mailbox counted before Forget: %+v", s)
	}
	m.Forget()
	if s, _ := m.Summary("201"); s.New != 1 || s.Bytes != 3 {
		t.Fatalf("after Forget: %+v, want 1 new of 3 bytes", s)
	}
	put("b")
	now = now.Add(summaryMaxAge)
	if s, _ := m.Summary("201"); s.New != 2 {
		t.Fatalf("after %v: %+v, want 2 new", summaryMaxAge, s)
	}
}

// countingStore counts the listings of mailboxes.
type countingStore struct {
	*MemStore
	lists atomic.Int32
}

func (s *countingStore) Voicemails(box string) ([][]byte, error) {
	s.lists.Add(1)
	return s.MemStore.Voicemails(box)
}
