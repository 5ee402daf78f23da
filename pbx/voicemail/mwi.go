package voicemail

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Summary is the state of a mailbox as an RFC 3842 message-summary body
// carries it.
type Summary struct {
	New, Old int
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

// errSummary: not a message-summary body.
var errSummary = errors.New("malformed message-summary body")

// ParseSummary reads a message-summary body (RFC 3842 §5.2): the
// Messages-Waiting line is required, the voice-message counts are
// optional (urgent counts in parentheses are ignored). Other message
// classes and headers are skipped.
func ParseSummary(body []byte) (Summary, bool, error) {
	var s Summary
	waiting, found := false, false
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			return Summary{}, false, fmt.Errorf("%w: line %q", errSummary, line)
		}
		val = strings.TrimSpace(val)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "messages-waiting":
			switch strings.ToLower(val) {
			case "yes":
				waiting = true
			case "no":
			default:
				return Summary{}, false, fmt.Errorf("%w: Messages-Waiting %q", errSummary, val)
			}
			found = true
		case "message-account":
			s.Account = val
		case "voice-message":
			counts, _, _ := strings.Cut(val, "(")
			n, o, ok := strings.Cut(strings.TrimSpace(counts), "/")
			if !ok {
				return Summary{}, false, fmt.Errorf("%w: Voice-Message %q", errSummary, val)
			}
			var err1, err2 error
			s.New, err1 = strconv.Atoi(strings.TrimSpace(n))
			s.Old, err2 = strconv.Atoi(strings.TrimSpace(o))
			if err1 != nil || err2 != nil || s.New < 0 || s.Old < 0 {
				return Summary{}, false, fmt.Errorf("%w: Voice-Message %q", errSummary, val)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Summary{}, false, fmt.Errorf("%w: %v", errSummary, err)
	}
	if !found {
		return Summary{}, false, fmt.Errorf("%w: no Messages-Waiting line", errSummary)
	}
	return s, waiting, nil
}
