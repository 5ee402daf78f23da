package dispatch

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// Algorithm picks the backend of a new call. The numbers are those of
// kamailio's dispatcher module, which the operators of the article know.
type Algorithm int

// The algorithms.
const (
	HashCallID Algorithm = 0 // hash over the Call-ID
	HashFrom   Algorithm = 1 // hash over the From URI (user@host:port)
	HashTo     Algorithm = 2 // hash over the To URI
	HashRURI   Algorithm = 3 // hash over the Request-URI
	RoundRobin Algorithm = 4 // weighted round robin
)

var algNames = map[Algorithm]string{
	HashCallID: "hash-callid",
	HashFrom:   "hash-from",
	HashTo:     "hash-to",
	HashRURI:   "hash-ruri",
	RoundRobin: "round-robin",
}

func (a Algorithm) String() string {
	if n, ok := algNames[a]; ok {
		return n
	}
	return fmt.Sprintf("algorithm(%d)", int(a))
}

// ParseAlgorithm takes a name ("hash-callid", "hash-from", "hash-to",
// "hash-ruri", "round-robin") or kamailio's number ("0".."4").
func ParseAlgorithm(s string) (Algorithm, error) {
	for a, n := range algNames {
		if s == n || s == fmt.Sprint(int(a)) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown dispatcher algorithm %q (want hash-callid, hash-from, hash-to, hash-ruri, round-robin or 0-4)", s)
}

// Key returns the text a hash algorithm hashes for req: the Call-ID, or
// user@host:port of the From, To or Request-URI (without parameters, so a
// From tag or a transport parameter does not move a caller). Host names
// compare case-insensitively. Round robin has no key ("").
func (a Algorithm) Key(req *sip.Request) string {
	switch a {
	case HashCallID:
		if h := req.CallID(); h != nil {
			return h.Value()
		}
	case HashFrom:
		if h := req.From(); h != nil {
			return uriKey(h.Address)
		}
	case HashTo:
		if h := req.To(); h != nil {
			return uriKey(h.Address)
		}
	case HashRURI:
		return uriKey(req.Recipient)
	}
	return ""
}

func uriKey(u sip.Uri) string {
	var b strings.Builder
	if u.User != "" {
		b.WriteString(u.User)
		b.WriteByte('@')
	}
	b.WriteString(strings.ToLower(u.Host))
	if u.Port != 0 {
		fmt.Fprintf(&b, ":%d", u.Port)
	}
	return b.String()
}

// selector chooses among backends by name and weight. Hashing is weighted
// rendezvous hashing over the key and each backend's name: the result
// depends on nothing but those (not on the order of the list, not on a
// map, not on a restart), and a backend going down moves only its own
// keys. Round robin is smooth weighted round robin: each backend gets its
// weight's share, spread out rather than in runs.
type selector struct {
	alg Algorithm
	set atomic.Pointer[selSet] // replaced whole when the backends change

	mu      sync.Mutex
	current []int // smooth round robin state
}

// selSet is the backends' names, weights and priorities at one moment.
type selSet struct {
	names   []string
	weights []int
	// prios are SRV priorities, entries the SRV name each backend came
	// from: a backend is picked only when none of the same name with a
	// lower number may be (RFC 2782). nil: no name has two priorities.
	prios, entries []int
}

// newSelector returns a selector over names and weights, with room for
// capacity backends (at least len(names)).
func newSelector(alg Algorithm, names []string, weights []int, capacity ...int) *selector {
	n := len(names)
	if len(capacity) > 0 {
		n = max(n, capacity[0])
	}
	s := &selector{alg: alg, current: make([]int, n)}
	s.setNames(names, weights, nil, nil)
	return s
}

// setNames replaces the backends (only ever more of them, up to the
// capacity given to newSelector), with the priority of each and the entry
// (configured name) it came from; prios nil: all equal.
func (s *selector) setNames(names []string, weights, prios, entries []int) {
	for i, p := range prios {
		for j := range i {
			if entries[j] == entries[i] && prios[j] != p {
				s.set.Store(&selSet{names: names, weights: weights, prios: prios, entries: entries})
				return
			}
		}
	}
	s.set.Store(&selSet{names: names, weights: weights})
}

// firstPriority narrows up, within each entry, to the backends of the
// lowest priority number among those up allows.
func (set *selSet) firstPriority(up func(int) bool) func(int) bool {
	if set.prios == nil {
		return up
	}
	best := map[int]int{} // entry: lowest priority up
	for i := range set.names {
		if !up(i) {
			continue
		}
		if b, ok := best[set.entries[i]]; !ok || set.prios[i] < b {
			best[set.entries[i]] = set.prios[i]
		}
	}
	return func(i int) bool { return up(i) && set.prios[i] == best[set.entries[i]] }
}

// pick returns the index of the backend for key among those up reports
// true for, or -1 when none is up.
func (s *selector) pick(key string, up func(int) bool) int {
	if s.alg == RoundRobin {
		return s.roundRobin(up)
	}
	set := s.set.Load()
	up = set.firstPriority(up)
	best, bestScore := -1, math.Inf(-1)
	for i, name := range set.names {
		if !up(i) {
			continue
		}
		sc := score(key, name, set.weights[i])
		if sc > bestScore || sc == bestScore && best >= 0 && name < set.names[best] {
			best, bestScore = i, sc
		}
	}
	return best
}

// score is the weighted rendezvous score of name for key: -w/ln(u) with u
// uniform in (0,1) from a 64-bit FNV-1a hash of both.
func score(key, name string, weight int) float64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(name))
	// FNV's low bits mix poorly for short inputs; finish with a
	// splitmix64 step before taking the top 53 bits.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return -float64(weight) / math.Log(u)
}

func (s *selector) roundRobin(up func(int) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.set.Load()
	up = set.firstPriority(up)
	best, total := -1, 0
	for i, w := range set.weights {
		if !up(i) {
			continue
		}
		s.current[i] += w
		total += w
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	if best >= 0 {
		s.current[best] -= total
	}
	return best
}
