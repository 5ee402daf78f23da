package resolve

import (
	"cmp"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// orderSRV returns recs in the order RFC 2782 says to try them: by
// priority, lowest first, and within a priority by weighted random
// selection: records of weight 0 first, a running sum of the weights, a
// uniform number from 0 to the sum inclusive, the first record whose
// running sum reaches it; that record is taken out and the rest drawn
// again. intn(n) returns a uniform integer in [0, n). recs is not changed.
func orderSRV(recs []*dns.SRV, intn func(int) int) []*dns.SRV {
	rs := slices.Clone(recs)
	slices.SortStableFunc(rs, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*dns.SRV, 0, len(rs))
	for len(rs) > 0 {
		n := 1
		for n < len(rs) && rs[n].Priority == rs[0].Priority {
			n++
		}
		group := rs[:n]
		rs = rs[n:]
		// Weight 0 first, otherwise as they came.
		slices.SortStableFunc(group, func(a, b *dns.SRV) int {
			return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
		})
		for len(group) > 0 {
			sum := 0
			for _, s := range group {
				sum += int(s.Weight)
			}
			pick := intn(sum + 1)
			i, run := 0, 0
			for ; i < len(group)-1; i++ {
				run += int(group[i].Weight)
				if run >= pick {
					break
				}
			}
			out = append(out, group[i])
			group = slices.Delete(group, i, i+1)
		}
	}
	return out
}

// naptrChoice is one usable NAPTR record: a transport and the SRV name.
type naptrChoice struct {
	order, pref uint16
	transport   string
	srv         string
}

// naptrTransport maps a NAPTR service field (RFC 3263 §4.1, case
// insensitive) to our transport name, and says whether it is a SIPS one.
func naptrTransport(service string) (tr string, secure, ok bool) {
	switch strings.ToUpper(service) {
	case "SIP+D2U":
		return UDP, false, true
	case "SIP+D2T":
		return TCP, false, true
	case "SIPS+D2T":
		return TLS, true, true
	}
	return "", false, false
}

// usableNAPTR keeps the records a client of the given transports can use
// for a SIP (or SIPS) URI: flag "S" (the replacement is an SRV name), no
// regular expression, a known SIP service on an enabled transport; and
// sorts them by order, then preference. A SIP URI may use SIPS+D2T when
// TLS is enabled; a SIPS URI only SIPS+D2T.
func usableNAPTR(recs []*dns.NAPTR, secure bool, transports []string) []naptrChoice {
	var out []naptrChoice
	for _, n := range recs {
		if !strings.EqualFold(n.Flags, "s") || n.Regexp != "" {
			continue
		}
		tr, sec, ok := naptrTransport(n.Service)
		if !ok || (secure && !sec) || !slices.Contains(transports, tr) {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(n.Replacement, "."))
		if name == "" {
			continue
		}
		out = append(out, naptrChoice{order: n.Order, pref: n.Preference, transport: tr, srv: name})
	}
	slices.SortStableFunc(out, func(a, b naptrChoice) int {
		return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.pref, b.pref))
	})
	// The same transport and SRV name twice: the first (best) one counts.
	uniq := out[:0]
	for _, c := range out {
		if !slices.ContainsFunc(uniq, func(o naptrChoice) bool { return o.transport == c.transport && o.srv == c.srv }) {
			uniq = append(uniq, c)
		}
	}
	return uniq
}
