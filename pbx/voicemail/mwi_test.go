package voicemail

import "testing"

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
	}
}
