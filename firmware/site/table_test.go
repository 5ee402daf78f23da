package site

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/twinpbx/twinpbx/pbx/location"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func bind(aor, contact string, expires time.Duration) location.Binding {
	return location.Binding{AOR: aor, Contact: contact, Source: "udp:" + strings.TrimPrefix(contact, "sip:"+aor+"@"),
		Expires: t0.Add(expires), Updated: t0}
}

func logOf(t *testing.T, c command) *raft.Log {
	t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Type: raft.LogCommand, Data: data}
}

func contacts(bs []location.Binding) string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Contact)
	}
	return strings.Join(out, " ")
}

func TestTableApply(t *testing.T) {
	a1 := bind("100", "sip:100@10.0.0.1:5060", time.Hour)
	a2 := bind("100", "sip:100@10.0.0.2:5060", time.Hour)
	b1 := bind("101", "sip:101@10.0.0.3:5060", time.Minute)
	tests := []struct {
		name   string
		cmds   []command
		aor    string
		except string
		at     time.Time
		want   string // contacts Lookup returns
		len    int
	}{
		{"put", []command{{Op: opSync, Owner: "x", Put: []location.Binding{a1, b1}}}, "100", "", t0, a1.Contact, 2},
		{"own bindings are not looked up", []command{{Op: opSync, Owner: "x", Put: []location.Binding{a1}}}, "100", "x", t0, "", 1},
		{"delete", []command{
			{Op: opSync, Owner: "x", Put: []location.Binding{a1, a2}},
			{Op: opSync, Owner: "x", Delete: []Key{{"100", a1.Contact}}},
		}, "100", "", t0, a2.Contact, 1},
		{"delete of another owner's contact keeps it", []command{
			{Op: opSync, Owner: "x", Put: []location.Binding{a1}},
			{Op: opSync, Owner: "y", Delete: []Key{{"100", a1.Contact}}},
		}, "100", "", t0, a1.Contact, 1},
		{"ended bindings are not looked up", []command{{Op: opSync, Owner: "x", Put: []location.Binding{b1}}}, "101", "", t0.Add(2 * time.Minute), "", 1},
		{"expire drops ended bindings", []command{
			{Op: opSync, Owner: "x", Put: []location.Binding{a1, b1}},
			{Op: opExpire, Before: t0.Add(2 * time.Minute)},
		}, "100", "", t0, a1.Contact, 1},
		{"a phone known to two boxes is returned once, as last seen", []command{
			{Op: opSync, Owner: "x", Put: []location.Binding{a1}},
			{Op: opSync, Owner: "y", Put: []location.Binding{func() location.Binding {
				b := a1
				b.Updated = t0.Add(time.Second)
				b.Source = "udp:10.9.9.9:5060"
				return b
			}()}},
		}, "100", "", t0, a1.Contact, 2},
		{"refresh replaces", []command{
			{Op: opSync, Owner: "x", Put: []location.Binding{a1}},
			{Op: opSync, Owner: "x", Put: []location.Binding{a1}},
		}, "100", "", t0, a1.Contact, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable()
			for _, c := range tt.cmds {
				if r := tb.Apply(logOf(t, c)); r != nil {
					t.Fatalf("Apply(%+v) = %v", c, r)
				}
			}
			got := tb.Lookup(tt.aor, tt.except, tt.at)
			if contacts(got) != tt.want {
				t.Errorf("Lookup = %q, want %q", contacts(got), tt.want)
			}
			if tb.Len() != tt.len || len(tb.Entries()) != tt.len {
				t.Errorf("Len = %d, Entries = %d, want %d", tb.Len(), len(tb.Entries()), tt.len)
			}
		})
	}
}

func TestTableLookupPrefersLatestOwner(t *testing.T) {
	tb := NewTable()
	a := bind("100", "sip:100@10.0.0.1:5060", time.Hour)
	moved := a
	moved.Source, moved.Updated = "udp:10.0.0.1:6000", t0.Add(time.Minute)
	tb.apply(command{Op: opSync, Owner: "x", Put: []location.Binding{a}})
	tb.apply(command{Op: opSync, Owner: "y", Put: []location.Binding{moved}})
	got := tb.Lookup("100", "", t0)
	if len(got) != 1 || got[0].Source != moved.Source || got[0].Holder != "y" {
		t.Errorf("Lookup = %+v, want only the newer binding, held by y", got)
	}
	if o := tb.Owned("x"); len(o) != 1 || o[Key{"100", a.Contact}].Source != a.Source {
		t.Errorf("Owned(x) = %+v", o)
	}
}

func TestTableApplyRefusesBadCommands(t *testing.T) {
	long := strings.Repeat("9", maxField+1)
	tests := []struct {
		name string
		data string
	}{
		{"not json", "{"},
		{"unknown op", `{"op":"drop"}`},
		{"sync without owner", `{"op":"sync","put":[{"aor":"100","contact":"sip:x"}]}`},
		{"empty aor", `{"op":"sync","owner":"x","put":[{"aor":"","contact":"sip:x"}]}`},
		{"empty contact in delete", `{"op":"sync","owner":"x","delete":[{"aor":"100","contact":""}]}`},
		{"too long", `{"op":"sync","owner":"x","put":[{"aor":"` + long + `","contact":"sip:x"}]}`},
		{"expire without time", `{"op":"expire"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable()
			tb.apply(command{Op: opSync, Owner: "x", Put: []location.Binding{bind("100", "sip:100@10.0.0.1", time.Hour)}})
			r := tb.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte(tt.data)})
			if _, ok := r.(error); !ok {
				t.Errorf("Apply(%s) = %v, want an error", tt.data, r)
			}
			if tb.Len() != 1 {
				t.Errorf("a refused command changed the table: %d entries", tb.Len())
			}
		})
	}
	if r := NewTable().Apply(&raft.Log{Type: raft.LogConfiguration, Data: []byte("x")}); r != nil {
		t.Errorf("a configuration entry was applied: %v", r)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

func TestTableSnapshotRestore(t *testing.T) {
	src := NewTable()
	src.apply(command{Op: opSync, Owner: "x", Put: []location.Binding{bind("100", "sip:100@10.0.0.1", time.Hour), bind("101", "sip:101@10.0.0.2", time.Hour)}})
	src.apply(command{Op: opSync, Owner: "y", Put: []location.Binding{bind("100", "sip:100@10.0.0.1", time.Hour)}})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	dst := NewTable()
	dst.apply(command{Op: opSync, Owner: "z", Put: []location.Binding{bind("102", "sip:102@10.0.0.3", time.Hour)}})
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want, got := src.Entries(), dst.Entries()
	if len(got) != 3 || dst.Len() != 3 {
		t.Fatalf("restored %d entries (Len %d), want 3: %+v", len(got), dst.Len(), got)
	}
	for i := range want {
		if want[i].Owner != got[i].Owner || want[i].Contact != got[i].Contact || !want[i].Expires.Equal(got[i].Expires) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestTableRestoreRefusesBadSnapshots(t *testing.T) {
	tests := []struct{ name, data string }{
		{"not json", "nope"},
		{"other version", `{"version":2,"entries":[]}`},
		{"no owner", `{"version":1,"entries":[{"aor":"100","contact":"sip:x"}]}`},
		{"no contact", `{"version":1,"entries":[{"owner":"x","aor":"100","contact":""}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable()
			tb.apply(command{Op: opSync, Owner: "x", Put: []location.Binding{bind("100", "sip:100@10.0.0.1", time.Hour)}})
			if err := tb.Restore(io.NopCloser(strings.NewReader(tt.data))); err == nil {
				t.Fatal("a bad snapshot was restored")
			}
			if tb.Len() != 1 {
				t.Errorf("a refused snapshot changed the table: %d entries", tb.Len())
			}
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"op":"sync","owner":"x","put":[{"aor":"100","contact":"sip:100@10.0.0.1","expires":"2026-11-24T12:00:00Z"}],"delete":[{"aor":"101","contact":"sip:101@h"}]}`))
	f.Add([]byte(`{"op":"expire","before":"2026-11-24T12:00:00Z"}`))
	f.Add([]byte(`{"op":"sync"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			return
		}
		tb := NewTable()
		tb.apply(c) // must not panic
		if c.Op == opSync && tb.Len() > len(c.Put) {
			t.Fatalf("%d entries from %d puts", tb.Len(), len(c.Put))
		}
	})
}

func FuzzReadSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"entries":[{"owner":"x","aor":"100","contact":"sip:100@10.0.0.1","expires":"2026-11-24T12:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"entries":[]}`))
	f.Add([]byte(`{"version":1,"entries":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		byAOR, n, err := readSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		count := 0
		for _, m := range byAOR {
			count += len(m)
		}
		if count != n {
			t.Fatalf("counted %d entries, holds %d", n, count)
		}
	})
}
