package store

import (
	"bytes"
	"maps"
	"testing"

	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// TestVoicemail stores, lists, updates and deletes messages, and checks
// that every change is in the log the twin is fed from and applies there.
func TestVoicemail(t *testing.T) {
	s := openT(t, "", Options{})
	audio := bytes.Repeat([]byte{0xd5}, 16000)
	steps := []struct {
		name  string
		do    func() error
		box   string
		count int
	}{
		{"first message", func() error { return s.PutVoicemail("201", "a", []byte(`{"id":"a"}`), audio) }, "201", 1},
		{"second message", func() error { return s.PutVoicemail("201", "b", []byte(`{"id":"b"}`), audio[:8]) }, "201", 2},
		{"another mailbox", func() error { return s.PutVoicemail("20", "c", []byte(`{"id":"c"}`), audio[:8]) }, "20", 1},
		{"marked listened, audio kept", func() error { return s.PutVoicemail("201", "a", []byte(`{"id":"a","new":false}`), nil) }, "201", 2},
		{"deleted", func() error { return s.DeleteVoicemail("201", "b") }, "201", 1},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.Voicemails(st.box)
		if err != nil || len(got) != st.count {
			t.Fatalf("%s: mailbox %s holds %d (%v), want %d", st.name, st.box, len(got), err, st.count)
		}
	}
	if a, err := s.VoicemailAudio("201", "a"); err != nil || !bytes.Equal(a, audio) {
		t.Errorf("audio of a: %d bytes, %v", len(a), err)
	}
	if a, _ := s.VoicemailAudio("201", "b"); a != nil {
		t.Errorf("audio of the deleted message: %d bytes", len(a))
	}
	if boxes, err := s.VoicemailBoxes(); err != nil || len(boxes) != 2 || boxes[0] != "20" || boxes[1] != "201" {
		t.Errorf("mailboxes %v %v", boxes, err)
	}
	for _, bad := range [][2]string{{"", "x"}, {"201", ""}, {"2\x000", "x"}} {
		if err := s.PutVoicemail(bad[0], bad[1], []byte("{}"), nil); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}

	// The twin applies the log and holds the same.
	changes, err := s.ChangesSince(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	twin := openT(t, "", Options{})
	if err := twin.Apply(changes); err != nil {
		t.Fatal(err)
	}
	for _, box := range []string{"201", "20"} {
		a, _ := s.Voicemails(box)
		b, _ := twin.Voicemails(box)
		if len(a) != len(b) || !bytes.Equal(bytes.Join(a, nil), bytes.Join(b, nil)) {
			t.Errorf("mailbox %s on the twin: %q, want %q", box, b, a)
		}
	}
	if a, _ := twin.VoicemailAudio("201", "a"); !bytes.Equal(a, audio) {
		t.Errorf("the twin holds %d bytes of audio, want %d", len(a), len(audio))
	}
}

// TestMWISubscriptions stores, replaces and deletes subscriptions and
// checks that the twin, fed from the change log, holds the same at each
// step (it carries them on after a failover).
func TestMWISubscriptions(t *testing.T) {
	s := openT(t, "", Options{})
	twin := openT(t, "", Options{})
	steps := []replicatedStep{
		{"first", func() error { return s.PutMWISubscription("a@h", []byte(`{"seq":2}`)) }, map[string]string{"a@h": `{"seq":2}`}},
		{"second", func() error { return s.PutMWISubscription("b@h", []byte(`{"seq":1}`)) }, map[string]string{"a@h": `{"seq":2}`, "b@h": `{"seq":1}`}},
		{"raised CSeq", func() error { return s.PutMWISubscription("a@h", []byte(`{"seq":102}`)) }, map[string]string{"a@h": `{"seq":102}`, "b@h": `{"seq":1}`}},
		{"ended", func() error { return s.DeleteMWISubscription("b@h") }, map[string]string{"a@h": `{"seq":102}`}},
		{"ended twice", func() error { return s.DeleteMWISubscription("b@h") }, map[string]string{"a@h": `{"seq":102}`}},
	}
	checkReplicated(t, s, twin, steps, func(st *Store) (map[string]string, error) { return asStrings(st.MWISubscriptions()) })
	if err := s.PutMWISubscription("", []byte("{}")); err == nil {
		t.Error("an empty id was accepted")
	}
}

// TestGreetings stores, replaces and deletes a recorded greeting; the
// twin fed from the change log holds the same.
func TestGreetings(t *testing.T) {
	s := openT(t, "", Options{})
	for _, step := range []struct {
		name string
		do   func() error
		want string
	}{
		{"recorded", func() error { return s.PutGreeting("201", []byte("one")) }, "one"},
		{"recorded again", func() error { return s.PutGreeting("201", []byte("two")) }, "two"},
		{"back to the tones", func() error { return s.DeleteGreeting("201") }, ""},
		{"again", func() error { return s.PutGreeting("201", []byte("three")) }, "three"},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if g, err := s.Greeting("201"); err != nil || string(g) != step.want {
			t.Fatalf("%s: greeting %q (%v), want %q", step.name, g, err, step.want)
		}
	}
	if g, _ := s.Greeting("202"); g != nil {
		t.Errorf("202 has greeting %q", g)
	}
	if err := s.PutGreeting("", []byte("x")); err == nil {
		t.Error("a greeting without a mailbox was accepted")
	}
	changes, err := s.ChangesSince(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	twin := openT(t, "", Options{})
	if err := twin.Apply(changes); err != nil {
		t.Fatal(err)
	}
	if g, _ := twin.Greeting("201"); string(g) != "three" {
		t.Errorf("the twin's greeting %q, want three", g)
	}
}

// TestVoicemailRecordings stores a message being recorded part by part,
// deletes it, and checks that the twin fed from the change log holds the
// same at each step (it keeps the audio when the box dies).
func TestVoicemailRecordings(t *testing.T) {
	s := openT(t, "", Options{})
	twin := openT(t, "", Options{})
	steps := []replicatedStep{ // id: record and parts joined by |
		{"started", func() error { return s.PutVoicemailRecording("c@h", []byte("r0"), 0, nil) }, map[string]string{"c@h": "r0"}},
		{"first part", func() error { return s.PutVoicemailRecording("c@h", []byte("r1"), 0, []byte("aa")) }, map[string]string{"c@h": "r1|aa"}},
		{"another call", func() error { return s.PutVoicemailRecording("d@h", []byte("d1"), 0, []byte("x")) }, map[string]string{"c@h": "r1|aa", "d@h": "d1|x"}},
		{"second part", func() error { return s.PutVoicemailRecording("c@h", []byte("r2"), 1, []byte("bb")) }, map[string]string{"c@h": "r2|aa|bb", "d@h": "d1|x"}},
		{"ended", func() error { return s.DeleteVoicemailRecording("c@h") }, map[string]string{"d@h": "d1|x"}},
		{"ended twice", func() error { return s.DeleteVoicemailRecording("c@h") }, map[string]string{"d@h": "d1|x"}},
	}
	checkReplicated(t, s, twin, steps, func(st *Store) (map[string]string, error) {
		got, err := st.VoicemailRecordings()
		out := map[string]string{}
		for k, v := range got {
			out[k] = string(bytes.Join(v, []byte("|")))
		}
		return out, err
	})
	for _, bad := range []struct {
		id   string
		part int
	}{{"", 0}, {"a\x00b", 0}, {"a", -1}, {"a", 1000000}} {
		if err := s.PutVoicemailRecording(bad.id, []byte("{}"), bad.part, nil); err == nil {
			t.Errorf("id %q part %d accepted", bad.id, bad.part)
		}
	}
}

// The store keeps everything the mailboxes keep, so that all of it
// reaches the twin: messages, subscriptions, greetings and mailbox calls
// in progress.
var (
	_ voicemail.Store             = (*Store)(nil)
	_ voicemail.SubscriptionStore = (*Store)(nil)
	_ voicemail.GreetingStore     = (*Store)(nil)
	_ voicemail.RecordingStore    = (*Store)(nil)
	_ voicemail.ToldStore         = (*Store)(nil)
)

// TestMWITold stores, replaces and forgets what contacts were told; the
// twin fed from the change log holds the same.
func TestMWITold(t *testing.T) {
	s := openT(t, "", Options{})
	twin := openT(t, "", Options{})
	steps := []replicatedStep{
		{"told", func() error { return s.PutMWITold("201\x00sip:a", []byte(`{"new":1}`)) }, map[string]string{"201\x00sip:a": `{"new":1}`}},
		{"told again", func() error { return s.PutMWITold("201\x00sip:a", []byte(`{"new":0}`)) }, map[string]string{"201\x00sip:a": `{"new":0}`}},
		{"another", func() error { return s.PutMWITold("202\x00sip:b", []byte(`{"new":2}`)) }, map[string]string{"201\x00sip:a": `{"new":0}`, "202\x00sip:b": `{"new":2}`}},
		{"forgotten", func() error { return s.DeleteMWITold("201\x00sip:a") }, map[string]string{"202\x00sip:b": `{"new":2}`}},
		{"forgotten twice", func() error { return s.DeleteMWITold("201\x00sip:a") }, map[string]string{"202\x00sip:b": `{"new":2}`}},
	}
	checkReplicated(t, s, twin, steps, func(st *Store) (map[string]string, error) { return asStrings(st.MWITold()) })
	if err := s.PutMWITold("", []byte("{}")); err == nil {
		t.Error("an empty key was accepted")
	}
}

// replicatedStep is one change to a bucket and what the box and its twin
// must then hold (key: value).
type replicatedStep struct {
	name string
	do   func() error
	want map[string]string
}

// checkReplicated runs the steps on s, feeds twin from s's change log
// after each, and checks that both hold the step's want, as read.
func checkReplicated(t *testing.T, s, twin *Store, steps []replicatedStep, read func(*Store) (map[string]string, error)) {
	t.Helper()
	var seq uint64
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		changes, err := s.ChangesSince(seq, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) > 0 {
			seq = changes[len(changes)-1].Seq
		}
		if err := twin.Apply(changes); err != nil {
			t.Fatalf("%s: applying on the twin: %v", st.name, err)
		}
		for name, st2 := range map[string]*Store{"box": s, "twin": twin} {
			got, err := read(st2)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, st.want) {
				t.Errorf("%s: the %s holds %q, want %q", st.name, name, got, st.want)
			}
		}
	}
}

// asStrings is a bucket's values as strings.
func asStrings(m map[string][]byte, err error) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out, err
}
