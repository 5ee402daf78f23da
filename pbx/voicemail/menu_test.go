package voicemail

import "testing"

func TestMenu(t *testing.T) {
	msgs := []Message{{ID: "c", New: true}, {ID: "b", New: true}, {ID: "a"}}
	type step struct {
		key  byte // 0: the message ended without a key
		act  Action
		id   string // the message the action applies to
		more bool   // Remaining after
	}
	tests := []struct {
		name  string
		msgs  []Message
		steps []step
	}{
		{name: "listen through", msgs: msgs, steps: []step{{0, Keep, "c", true}, {0, Keep, "b", true}, {0, Keep, "a", false}}},
		{name: "replay then delete", msgs: msgs, steps: []step{{'1', Play, "c", true}, {'7', Delete, "c", true}, {'#', Keep, "b", true}, {'9', Keep, "a", false}}},
		{name: "stray keys", msgs: msgs, steps: []step{{'5', Ignore, "c", true}, {'*', Ignore, "c", true}, {'7', Delete, "c", true}}},
		{name: "empty", msgs: nil, steps: []step{{'1', Done, "", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMenu(tc.msgs)
			if want := map[bool]Action{true: Play, false: Done}[len(tc.msgs) > 0]; m.Start() != want {
				t.Fatalf("start %v, want %v", m.Start(), want)
			}
			for i, s := range tc.steps {
				var act Action
				var msg Message
				if s.key == 0 {
					act, msg = m.Next()
				} else {
					act, msg = m.Key(s.key)
				}
				if act != s.act || msg.ID != s.id || m.Remaining() != s.more {
					t.Fatalf("step %d (key %q): %v on %q, remaining %v; want %v on %q, %v", i, s.key, act, msg.ID, m.Remaining(), s.act, s.id, s.more)
				}
			}
		})
	}
}
