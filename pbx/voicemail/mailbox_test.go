package voicemail

import (
	"errors"
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
