package voicemail

import (
	"strings"
	"testing"
)

func TestSummaryBody(t *testing.T) {
	tests := []struct {
		s    Summary
		want string
	}{
		{Summary{}, "Messages-Waiting: no\r\nVoice-Message: 0/0\r\n"},
		{Summary{New: 2, Old: 1, Account: "sip:*98@pbx"}, "Messages-Waiting: yes\r\nMessage-Account: sip:*98@pbx\r\nVoice-Message: 2/1\r\n"},
		{Summary{Old: 4}, "Messages-Waiting: no\r\nVoice-Message: 0/4\r\n"},
	}
	for _, tc := range tests {
		got := string(tc.s.Body())
		if got != tc.want {
			t.Errorf("%+v: body %q, want %q", tc.s, got, tc.want)
		}
		back, waiting, err := ParseSummary([]byte(got))
		if err != nil || back != tc.s || waiting != (tc.s.New > 0) {
			t.Errorf("%+v: parsed back as %+v waiting=%v err=%v", tc.s, back, waiting, err)
		}
	}
}

func TestParseSummary(t *testing.T) {
	tests := []struct {
		body    string
		new     int
		waiting bool
		err     string
	}{
		{body: "Messages-Waiting: yes\nVoice-Message: 3/5 (1/0)\nFax-Message: 1/0\n", new: 3, waiting: true},
		{body: "messages-waiting:NO\r\n", waiting: false},
		{body: "Voice-Message: 1/1\r\n", err: "no Messages-Waiting"},
		{body: "Messages-Waiting: maybe\r\n", err: "maybe"},
		{body: "Messages-Waiting: yes\r\nVoice-Message: x/1\r\n", err: "Voice-Message"},
		{body: "Messages-Waiting: yes\r\nVoice-Message: -1/1\r\n", err: "Voice-Message"},
		{body: "garbage", err: "garbage"},
	}
	for _, tc := range tests {
		s, waiting, err := ParseSummary([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one with %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || s.New != tc.new || waiting != tc.waiting {
			t.Errorf("%q: %+v waiting=%v err=%v", tc.body, s, waiting, err)
		}
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add([]byte("Messages-Waiting: yes\r\nMessage-Account: sip:*98@pbx\r\nVoice-Message: 2/1 (0/0)\r\n"))
	f.Add([]byte("Messages-Waiting: no\n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, waiting, err := ParseSummary(body)
		if err != nil {
			return
		}
		// What parses renders and parses back to the same counts.
		back, w2, err := ParseSummary(Summary{New: s.New, Old: s.Old}.Body())
		if err != nil || back.New != s.New || back.Old != s.Old {
			t.Fatalf("%+v rendered and parsed back as %+v (%v)", s, back, err)
		}
		_ = waiting
		_ = w2
	})
}
