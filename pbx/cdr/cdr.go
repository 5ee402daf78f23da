// Package cdr defines the call detail record: one per call attempt, written
// when the attempt ends, whatever its outcome, and exported as CSV.
package cdr

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Disposition is how a call attempt ended.
type Disposition string

// Dispositions, as in the CSV export.
const (
	Answered  Disposition = "ANSWERED"
	NoAnswer  Disposition = "NO ANSWER"
	Busy      Disposition = "BUSY"
	Cancelled Disposition = "CANCELLED"
	Failed    Disposition = "FAILED"
)

// Record is one call attempt.
type Record struct {
	// ID is unique per attempt (the A-leg Call-ID plus a counter is fine).
	ID     string `json:"id"`
	CallID string `json:"call_id"`
	Caller string `json:"caller"`
	// CallerName is the display name the caller sent, if any.
	CallerName string      `json:"caller_name,omitempty"`
	Callee     string      `json:"callee"`
	Start      time.Time   `json:"start"`
	Answer     time.Time   `json:"answer,omitzero"`
	End        time.Time   `json:"end"`
	Disp       Disposition `json:"disposition"`
	// SIPCode is the final SIP status sent to the caller (200 when answered).
	SIPCode int `json:"sip_code"`
	// HangupBy is "caller", "callee" or "system" for answered calls.
	HangupBy string `json:"hangup_by,omitempty"`
	// Trunk names the trunk the call went out or came in over; empty for
	// calls between extensions.
	Trunk string `json:"trunk,omitempty"`
	// Site names the other box of a site cluster the call was forwarded
	// through (docs/SITE.md): on the box that took the call, the box
	// holding the callee's registration; on that box, the box it came
	// from. Empty for calls that stayed on one box.
	Site string `json:"site,omitempty"`
}

// Billsec is the answered duration, rounded down to whole seconds.
func (r Record) Billsec() int {
	if r.Answer.IsZero() || r.End.Before(r.Answer) {
		return 0
	}
	return int(r.End.Sub(r.Answer) / time.Second)
}

// Duration is the time from start to end, rounded down to whole seconds.
func (r Record) Duration() int {
	if r.End.Before(r.Start) {
		return 0
	}
	return int(r.End.Sub(r.Start) / time.Second)
}

// CSVHeader is the first line of an export.
var CSVHeader = []string{"id", "call_id", "caller", "caller_name", "callee", "start", "answer", "end", "duration", "billsec", "disposition", "sip_code", "hangup_by", "trunk", "site"}

// WriteCSV writes the records, with a header line, times in RFC 3339 UTC.
func WriteCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("writing CDR header: %w", err)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, r := range recs {
		row := []string{r.ID, r.CallID, r.Caller, r.CallerName, r.Callee, ts(r.Start), ts(r.Answer), ts(r.End),
			strconv.Itoa(r.Duration()), strconv.Itoa(r.Billsec()), string(r.Disp), strconv.Itoa(r.SIPCode), r.HangupBy, r.Trunk, r.Site}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("writing CDR %s: %w", r.ID, err)
		}
	}
	cw.Flush()
	return cw.Error()
}
