package voicemail

import (
	"testing"
	"unsafe"
)

// The kept counts are keyed by a copy of the mailbox name: the name may be
// a piece of a whole REGISTER read by regwire, which the key would keep in
// memory for as long as the counts are kept.
func TestSummaryKeyIsACopy(t *testing.T) {
	m := NewMailboxes(NewMemStore(), func() int { return 5 }, nil)
	request := "REGISTER sip:pbx SIP/2.0\r\nTo: <sip:201@pbx>\r\n"
	box := request[len("REGISTER sip:pbx SIP/2.0\r\nTo: <sip:") : len(request)-len("@pbx>\r\n")]
	if box != "201" {
		t.Fatalf("box %q", box)
	}
	if _, err := m.Summary(box); err != nil {
		t.Fatal(err)
	}
	m.sumMu.Lock()
	defer m.sumMu.Unlock()
	if len(m.sums) != 1 {
		t.Fatalf("%d mailboxes' counts kept, want 1", len(m.sums))
	}
	for k := range m.sums {
		start := uintptr(unsafe.Pointer(unsafe.StringData(request)))
		if p := uintptr(unsafe.Pointer(unsafe.StringData(k))); p >= start && p < start+uintptr(len(request)) {
			t.Errorf("the key %q is a piece of the request", k)
		}
	}
}
