package voicemail

import (
	"fmt"
	"strings"
)

// Summary is the state of a mailbox as an RFC 3842 message-summary body
// carries it.
type Summary struct {
	New, Old int
	// Bytes is the audio the messages hold (not in the body).
	Bytes int
	// Account is the mailbox's URI (Message-Account), optional.
	Account string
}

// Body renders s as application/simple-message-summary.
func (s Summary) Body() []byte {
	var b strings.Builder
	if s.New > 0 {
		b.WriteString("Messages-Waiting: yes\r\n")
	} else {
		b.WriteString("Messages-Waiting: no\r\n")
	}
	if s.Account != "" {
		fmt.Fprintf(&b, "Message-Account: %s\r\n", s.Account)
	}
	fmt.Fprintf(&b, "Voice-Message: %d/%d\r\n", s.New, s.Old)
	return []byte(b.String())
}
