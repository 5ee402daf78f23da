package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

func testCDR(id string, start time.Time) cdr.Record {
	return cdr.Record{ID: id, CallID: id + "@pbx", Caller: "100", Callee: "101", Start: start,
		Answer: start.Add(2 * time.Second), End: start.Add(time.Minute), Disp: cdr.Answered, SIPCode: 200, HangupBy: "caller"}
}

func testBinding(aor, contact string, now time.Time) location.Binding {
	return location.Binding{AOR: aor, Contact: contact, Source: "udp:192.0.2.7:5062", CallID: "reg-" + contact,
		CSeq: 3, Expires: now.Add(time.Hour), Q: 500, UserAgent: "test phone", Updated: now}
}

func TestConfigVersions(t *testing.T) {
	s := openT(t, "", Options{})
	if _, _, err := s.LatestConfig(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LatestConfig on an empty store = %v, want ErrNotFound", err)
	}
	steps := []struct {
		text    string
		version uint64
		ok      bool
	}{
		{"v: 1", 1, true},
		{"v: 2", 2, true},
		{"v: 2", 2, true},          // the same again: harmless
		{"v: 2 changed", 2, false}, // same version, other text
		{"v: 1 again", 1, false},   // older
		{"v: 0", 0, false},
		{"v: 10", 10, true},
	}
	for _, st := range steps {
		err := s.SaveConfig([]byte(st.text), st.version)
		if (err == nil) != st.ok {
			t.Errorf("SaveConfig(%q, %d) = %v, want ok=%v", st.text, st.version, err, st.ok)
		}
	}
	v, text, err := s.LatestConfig()
	if err != nil || v != 10 || string(text) != "v: 10" {
		t.Errorf("LatestConfig = %d, %q, %v", v, text, err)
	}
	vs, err := s.ConfigVersions()
	if err != nil || !reflect.DeepEqual(vs, []uint64{1, 2, 10}) {
		t.Errorf("ConfigVersions = %v, %v", vs, err)
	}
	if text, err := s.Config(2); err != nil || string(text) != "v: 2" {
		t.Errorf("Config(2) = %q, %v", text, err)
	}
	if _, err := s.Config(3); !errors.Is(err, ErrNotFound) {
		t.Errorf("Config(3) = %v, want ErrNotFound", err)
	}
}

func TestBindings(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	a := testBinding("101", "sip:101@192.0.2.1", now)
	b := testBinding("100", "sip:100@192.0.2.2;transport=tcp", now)
	c := testBinding("100", "sip:100@192.0.2.1", now)
	for _, x := range []location.Binding{a, b, c} {
		if err := s.SaveBinding(x); err != nil {
			t.Fatal(err)
		}
	}
	c.CSeq = 4
	if err := s.SaveBinding(c); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBinding("101", "sip:101@192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBinding("101", "sip:never@there"); err != nil {
		t.Errorf("deleting a missing binding: %v", err)
	}
	if err := s.SaveBinding(location.Binding{AOR: "100"}); err == nil {
		t.Error("binding without contact accepted")
	}
	got, err := s.LoadBindings()
	if err != nil {
		t.Fatal(err)
	}
	if want := []location.Binding{c, b}; !reflect.DeepEqual(got, want) {
		t.Errorf("LoadBindings =\n%+v\nwant\n%+v", got, want)
	}
	// The location service runs on the store and survives a restart.
	loc, err := location.New(s, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	d := testBinding("102", "sip:102@192.0.2.9", now)
	if err := loc.Put(d, 5); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, Options{})
	loc, err = location.New(s, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if bs := loc.Lookup("102"); len(bs) != 1 || bs[0].Contact != d.Contact {
		t.Errorf("after restart Lookup(102) = %+v", bs)
	}
}

func TestCDRs(t *testing.T) {
	s := openT(t, "", Options{})
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	recs := []cdr.Record{
		testCDR("late", t0.Add(2*time.Hour)),
		testCDR("early", t0),
		testCDR("b-same", t0.Add(time.Hour)),
		testCDR("a-same", t0.Add(time.Hour).In(berlin)), // same instant, other zone
		testCDR("nanos", t0.Add(time.Hour+time.Nanosecond)),
	}
	for _, r := range recs {
		if err := s.AppendCDR(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendCDR(recs[0]); err != nil { // again: replaces
		t.Fatal(err)
	}
	if err := s.AppendCDR(cdr.Record{Start: t0}); err == nil {
		t.Error("CDR without ID accepted")
	}
	if err := s.AppendCDR(testCDR("far", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))); err == nil {
		t.Error("CDR in year 10000 accepted")
	}
	ids := func(rs []cdr.Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		from, to time.Time
		want     []string
	}{
		{time.Time{}, time.Time{}, []string{"early", "a-same", "b-same", "nanos", "late"}},
		{t0.Add(time.Hour), t0.Add(2 * time.Hour), []string{"a-same", "b-same", "nanos"}},
		{t0.Add(time.Hour).In(berlin), t0.Add(time.Hour + time.Nanosecond), []string{"a-same", "b-same"}},
		{t0.Add(time.Minute), time.Time{}, []string{"a-same", "b-same", "nanos", "late"}},
		{time.Time{}, t0.Add(time.Second), []string{"early"}},
		{t0.Add(3 * time.Hour), time.Time{}, nil},
		{t0.Add(time.Hour), t0, nil},
	}
	for _, tt := range tests {
		got, err := s.CDRs(tt.from, tt.to)
		if err != nil || !reflect.DeepEqual(ids(got), tt.want) {
			t.Errorf("CDRs(%v, %v) = %v, %v; want %v", tt.from, tt.to, ids(got), err, tt.want)
		}
	}
	got, _ := s.CDRs(t0, t0.Add(time.Second))
	if len(got) != 1 || !got[0].Start.Equal(t0) || got[0].Billsec() != 58 || got[0].Disp != cdr.Answered {
		t.Errorf("stored record came back as %+v", got)
	}
}

func TestDialogs(t *testing.T) {
	s := openT(t, "", Options{})
	for id, st := range map[string]string{"d1": "one", "d2": "two", "d3": ""} {
		if err := s.PutDialog(id, []byte(st)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteDialog("d2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDialog("d2"); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if err := s.PutDialog("", nil); err == nil {
		t.Error("dialog without id accepted")
	}
	got, err := s.Dialogs()
	if err != nil || !reflect.DeepEqual(got, map[string][]byte{"d1": []byte("one"), "d3": {}}) {
		t.Errorf("Dialogs = %q, %v", got, err)
	}
	cs, _ := s.ChangesSince(0, 0)
	if len(cs) != 4 || !cs[3].Delete {
		t.Errorf("log has %d changes, want 4 ending with the delete: %+v", len(cs), cs)
	}
}

// TestSaveBindingsIsOneWrite: a batch is one transaction, so one bad
// binding in it stores none of the others.
func TestSaveBindingsIsOneWrite(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	a := testBinding("100", "sip:100@192.0.2.1", now)
	b := testBinding("101", "sip:101@192.0.2.2", now)
	if err := s.SaveBindings([]location.Binding{a, {AOR: "102"}, b}); err == nil {
		t.Fatal("a batch with a binding without contact was accepted")
	}
	seq := s.Seq()
	if got, err := s.LoadBindings(); err != nil || len(got) != 0 {
		t.Fatalf("after a refused batch: %d bindings stored (%v), want none", len(got), err)
	}
	if err := s.SaveBindings([]location.Binding{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := s.Seq() - seq; got != 2 {
		t.Errorf("a batch of 2 added %d changes to the log, want 2", got)
	}
	got, err := s.LoadBindings()
	if err != nil {
		t.Fatal(err)
	}
	if want := []location.Binding{a, b}; !reflect.DeepEqual(got, want) {
		t.Errorf("LoadBindings =\n%+v\nwant\n%+v", got, want)
	}
}
