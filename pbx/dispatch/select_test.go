package dispatch

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/twinpbx/twinpbx/firmware/config"
)

var threeNames = []string{"10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060"}

func allUp(int) bool { return true }

// TestHashGolden pins where keys land, so a change of the hash (which
// would move every caller to another backend after an update) shows.
func TestHashGolden(t *testing.T) {
	s := newSelector(HashCallID, threeNames, []int{1, 1, 1})
	for _, tc := range []struct {
		key  string
		want string
	}{
		{"a84b4c76e66710@pc33.atlanta.com", "10.0.0.2:5060"},
		{"1-1234@127.0.0.1", "10.0.0.3:5060"},
		{"alice@example.com", "10.0.0.2:5060"},
		{"bob@example.com:5070", "10.0.0.2:5060"},
		{"100@10.1.1.1", "10.0.0.3:5060"},
		{"", "10.0.0.2:5060"},
		{"ünïcödé", "10.0.0.3:5060"},
	} {
		if got := threeNames[s.pick(tc.key, allUp)]; got != tc.want {
			t.Errorf("key %q: %s, want %s", tc.key, got, tc.want)
		}
	}
}

// TestHashIndependentOfOrder: the same key picks the same backend however
// the backends are listed (a config edit that reorders them, or a
// restart).
func TestHashIndependentOfOrder(t *testing.T) {
	orders := [][]string{
		threeNames,
		{threeNames[2], threeNames[0], threeNames[1]},
		{threeNames[1], threeNames[2], threeNames[0]},
	}
	for k := range 2000 {
		key := fmt.Sprintf("call-%d@host", k)
		var first string
		for j, names := range orders {
			s := newSelector(HashFrom, names, []int{1, 1, 1})
			got := names[s.pick(key, allUp)]
			if j == 0 {
				first = got
			} else if got != first {
				t.Fatalf("key %q: %s in order %v, %s in order %v", key, first, orders[0], got, names)
			}
		}
	}
}

// TestHashSpread: keys spread by weight, within 3 percentage points.
func TestHashSpread(t *testing.T) {
	for _, tc := range []struct {
		weights []int
	}{
		{[]int{1, 1, 1}},
		{[]int{1, 2, 3}},
		{[]int{10, 1, 1}},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			s := newSelector(HashCallID, threeNames, tc.weights)
			const n = 30000
			count := make([]int, 3)
			for k := range n {
				count[s.pick(fmt.Sprintf("%x@10.9.8.7", k*7919), allUp)]++
			}
			total := 0
			for _, w := range tc.weights {
				total += w
			}
			for i, w := range tc.weights {
				want := float64(w) / float64(total)
				got := float64(count[i]) / n
				if math.Abs(got-want) > 0.03 {
					t.Errorf("backend %d got %.3f of the calls, want %.3f", i, got, want)
				}
			}
		})
	}
}

// TestHashDownMovesOnlyItsKeys: when a backend is down its keys go to the
// others, and no other key moves.
func TestHashDownMovesOnlyItsKeys(t *testing.T) {
	s := newSelector(HashRURI, threeNames, []int{1, 1, 1})
	down := func(i int) bool { return i != 1 }
	moved := 0
	for k := range 3000 {
		key := fmt.Sprintf("%d@pbx.example", k)
		before, after := s.pick(key, allUp), s.pick(key, down)
		switch {
		case after == 1:
			t.Fatalf("key %q went to the down backend", key)
		case before != 1 && after != before:
			t.Fatalf("key %q moved from %d to %d though its backend is up", key, before, after)
		case before == 1:
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key was on backend 1")
	}
	if got := s.pick("x", func(int) bool { return false }); got != -1 {
		t.Errorf("nothing up: picked %d, want -1", got)
	}
}

func TestRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []int
		up      func(int) bool
		n       int
		want    []int  // how many picks each backend gets
		seq     string // the first picks, when the order matters
	}{
		{"even", []int{1, 1, 1}, allUp, 300, []int{100, 100, 100}, "012012"},
		{"weighted", []int{1, 2, 3}, allUp, 600, []int{100, 200, 300}, "210212"},
		{"one down", []int{1, 1, 1}, func(i int) bool { return i != 0 }, 300, []int{0, 150, 150}, "1212"},
		{"heavy", []int{5, 1, 1}, allUp, 700, []int{500, 100, 100}, "0010200"},
		{"none up", []int{1, 1, 1}, func(int) bool { return false }, 3, []int{0, 0, 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSelector(RoundRobin, threeNames, tc.weights)
			count := make([]int, 3)
			var seq strings.Builder
			for k := range tc.n {
				i := s.pick("", tc.up)
				if i < 0 {
					continue
				}
				count[i]++
				if k < len(tc.seq) {
					fmt.Fprint(&seq, i)
				}
			}
			if fmt.Sprint(count) != fmt.Sprint(tc.want) {
				t.Errorf("picks %v, want %v", count, tc.want)
			}
			if seq.String() != tc.seq {
				t.Errorf("first picks %q, want %q", seq.String(), tc.seq)
			}
		})
	}
}

func TestKey(t *testing.T) {
	req := func(raw string) *sip.Request {
		t.Helper()
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Request)
	}
	a := req("INVITE sip:200@PBX.example:5070;transport=udp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK1\r\n" +
		"From: \"Al\" <sip:100@Phones.example>;tag=abc\r\n" +
		"To: <sip:200@pbx.example;user=phone>\r\n" +
		"Call-ID: c1@10.0.0.9\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	b := req("INVITE sip:200@pbx.example:5070 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK2\r\n" +
		"From: <sip:100@phones.example>;tag=other\r\n" +
		"To: \"Bob\" <sip:200@pbx.example>\r\n" +
		"Call-ID: c2@10.0.0.9\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
	for _, tc := range []struct {
		alg      Algorithm
		want     string
		sameAsB  bool
		algName  string
		algParse string
	}{
		{HashCallID, "c1@10.0.0.9", false, "hash-callid", "0"},
		{HashFrom, "100@phones.example", true, "hash-from", "1"},
		{HashTo, "200@pbx.example", true, "hash-to", "2"},
		{HashRURI, "200@pbx.example:5070", true, "hash-ruri", "3"},
		{RoundRobin, "", true, "round-robin", "4"},
	} {
		if got := tc.alg.Key(a); got != tc.want {
			t.Errorf("%s: key %q, want %q", tc.alg, got, tc.want)
		}
		if same := tc.alg.Key(a) == tc.alg.Key(b); same != tc.sameAsB {
			t.Errorf("%s: same key for both requests %v, want %v", tc.alg, same, tc.sameAsB)
		}
		for _, s := range []string{tc.algName, tc.algParse} {
			if got, err := ParseAlgorithm(s); err != nil || got != tc.alg {
				t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v", s, got, err, tc.alg)
			}
		}
	}
	for _, bad := range []string{"", "5", "-1", "hash", "ROUND-ROBIN"} {
		if _, err := ParseAlgorithm(bad); err == nil {
			t.Errorf("ParseAlgorithm(%q) accepted", bad)
		}
	}
}

// TestConfigNames: the config's algorithm names are ours, in kamailio's
// numbering.
func TestConfigNames(t *testing.T) {
	for i, n := range config.DispatcherAlgorithms {
		a, err := ParseAlgorithm(n)
		if err != nil || int(a) != i || a.String() != n {
			t.Errorf("config name %d %q: %v, %v", i, n, a, err)
		}
	}
}

// TestPriorities: with SRV priorities only the backends of the lowest
// number that may be picked are, for every algorithm; the next number's
// when all of those are down or excluded (a failover).
func TestPriorities(t *testing.T) {
	names := []string{"a:5060", "b:5060", "c:5060", "d:5060"}
	prios := []int{10, 10, 20, 30}
	for _, alg := range []Algorithm{HashCallID, RoundRobin} {
		s := newSelector(alg, names, []int{1, 1, 1, 1})
		s.setNames(names, []int{1, 1, 1, 1}, prios, []int{0, 0, 0, 0})
		for _, tc := range []struct {
			down []int
			want []int // the backends picks may land on
		}{
			{nil, []int{0, 1}},
			{[]int{0}, []int{1}},
			{[]int{0, 1}, []int{2}},
			{[]int{0, 1, 2}, []int{3}},
			{[]int{0, 1, 2, 3}, []int{-1}},
		} {
			up := func(i int) bool { return !slices.Contains(tc.down, i) }
			seen := map[int]bool{}
			for k := range 200 {
				got := s.pick(fmt.Sprint("key-", k), up)
				if !slices.Contains(tc.want, got) {
					t.Fatalf("%v, down %v: picked %d, want one of %v", alg, tc.down, got, tc.want)
				}
				seen[got] = true
			}
			if len(seen) != len(tc.want) {
				t.Errorf("%v, down %v: picked %v, want each of %v", alg, tc.down, seen, tc.want)
			}
		}
	}
	// Priorities count within one name: two names' are not compared.
	s := newSelector(RoundRobin, names, []int{1, 1, 1, 1})
	s.setNames(names, []int{1, 1, 1, 1}, []int{10, 20, 0, 0}, []int{0, 0, 1, 2})
	seen := map[int]int{}
	for range 300 {
		seen[s.pick("", func(int) bool { return true })]++
	}
	if seen[0] != 100 || seen[1] != 0 || seen[2] != 100 || seen[3] != 100 {
		t.Errorf("two names' priorities: picks %v, want 100 each for 0, 2, 3", seen)
	}
	// Equal priorities within each name are no priorities.
	s.setNames(names, []int{1, 1, 1, 1}, []int{5, 5, 7, 0}, []int{0, 0, 1, 2})
	if s.set.Load().prios != nil {
		t.Error("equal priorities kept")
	}
}
