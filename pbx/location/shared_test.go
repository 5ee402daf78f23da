package location

import (
	"slices"
	"testing"
	"time"
)

// sharedStore is a memStore that also answers for other boxes.
type sharedStore struct {
	memStore
	remote map[string][]Binding
	asked  []string
}

func (s *sharedStore) SharedLookup(aor string) []Binding {
	s.asked = append(s.asked, aor)
	return append([]Binding(nil), s.remote[aor]...)
}

func TestLookupConsultsTheSharedTableOnlyWithoutLocalBindings(t *testing.T) {
	now := time.Unix(10000, 0)
	other := Binding{AOR: "100", Contact: "sip:100@10.0.0.9", Source: "udp:10.0.0.9:5060", Expires: now.Add(time.Hour)}
	otherLow := Binding{AOR: "100", Contact: "sip:100@10.0.0.8", Source: "udp:10.0.0.8:5060", Expires: now.Add(time.Hour), Q: 100}
	otherHigh := Binding{AOR: "100", Contact: "sip:100@10.0.0.7", Source: "udp:10.0.0.7:5060", Expires: now.Add(time.Hour), Q: 900}
	tests := []struct {
		name     string
		local    []Binding
		remote   []Binding
		want     []string // contacts in order
		consults bool
	}{
		{"local wins", []Binding{{AOR: "100", Contact: "sip:100@10.0.0.1", Expires: now.Add(time.Hour)}}, []Binding{other}, []string{"sip:100@10.0.0.1"}, false},
		{"remote when none local", nil, []Binding{other}, []string{other.Contact}, true},
		{"remote when local expired", []Binding{{AOR: "100", Contact: "sip:100@10.0.0.1", Expires: now.Add(-time.Second)}}, []Binding{other}, []string{other.Contact}, true},
		{"remote sorted by q", nil, []Binding{otherLow, otherHigh}, []string{otherHigh.Contact, otherLow.Contact}, true},
		{"nowhere", nil, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &sharedStore{memStore: memStore{bs: map[string]Binding{}}, remote: map[string][]Binding{"100": tt.remote}}
			for _, b := range tt.local {
				st.bs[bindingID(b.AOR, b.Contact)] = b
			}
			s, err := New(st, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Reload(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range s.Lookup("100") {
				got = append(got, b.Contact)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Lookup = %v, want %v", got, tt.want)
			}
			if (len(st.asked) > 0) != tt.consults {
				t.Errorf("shared table asked %v, want consulted=%v", st.asked, tt.consults)
			}
			if all := s.All(); len(all) > len(tt.local) {
				t.Errorf("All shows other boxes' bindings: %v", all)
			}
		})
	}
}

func TestLookupWithoutSharedTableStaysLocal(t *testing.T) {
	s, err := New(&memStore{bs: map[string]Binding{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.shared != nil {
		t.Fatal("a plain Persister was taken for a shared table")
	}
	if got := s.Lookup("100"); got != nil {
		t.Errorf("Lookup = %v", got)
	}
}
