package resolve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// bytesDNS answers every question with the message packed in its bytes,
// re-addressed to the question: whatever a broken or hostile server sends.
type bytesDNS []byte

func (b bytesDNS) exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	m.Id = q.Id
	m.Question = q.Question
	return m, nil
}

func packed(f *testing.F, rcode int, answer, extra []string) []byte {
	m := new(dns.Msg)
	m.SetQuestion("x.", dns.TypeA)
	m.Response = true
	m.Rcode = rcode
	for _, l := range answer {
		rr, err := dns.NewRR(l)
		if err != nil {
			f.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	for _, l := range extra {
		rr, err := dns.NewRR(l)
		if err != nil {
			f.Fatal(err)
		}
		m.Extra = append(m.Extra, rr)
	}
	b, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzResolve feeds arbitrary destinations and arbitrary DNS answers to
// the resolver: it must not panic, and whatever it returns must be
// usable targets.
func FuzzResolve(f *testing.F) {
	naptr := packed(f, dns.RcodeSuccess, []string{
		`example.com. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.example.com.`,
		`example.com. 60 IN NAPTR 20 10 "s" "SIP+D2T" "" _sip._tcp.example.com.`,
	}, nil)
	srv := packed(f, dns.RcodeSuccess, []string{
		"_sip._udp.example.com. 60 IN SRV 10 5 5060 pbx.example.com.",
		"_sip._udp.example.com. 60 IN SRV 10 0 0 zero.example.com.",
		"_sip._udp.example.com. 60 IN SRV 20 5 5060 .",
	}, []string{"pbx.example.com. 60 IN A 192.0.2.1", "pbx.example.com. 60 IN AAAA ::"})
	a := packed(f, dns.RcodeSuccess, []string{"example.com. 0 IN CNAME example.com.", "example.com. 60 IN A 0.0.0.0"}, nil)
	for _, uri := range []string{"sip:example.com", "sips:example.com", "example.com:5070", "sip:[::1]", "sip:x@example.com;maddr=example.com;transport=tcp", "tel:1", ""} {
		for _, ans := range [][]byte{naptr, srv, a, packed(f, dns.RcodeNameError, nil, nil), {0xff}} {
			f.Add(uri, ans)
		}
	}
	f.Fuzz(func(t *testing.T, uri string, answer []byte) {
		r, err := newResolver(Config{
			Rand:       rand.New(rand.NewPCG(1, 1)),
			Transports: []string{UDP, TCP, TLS},
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, bytesDNS(answer))
		if err != nil {
			t.Fatal(err)
		}
		ts, err := r.ResolveString(context.Background(), uri)
		if err != nil {
			if len(ts) != 0 {
				t.Fatalf("error %v with targets %v", err, ts)
			}
			return
		}
		if len(ts) == 0 || len(ts) > maxTargets {
			t.Fatalf("%d targets without an error", len(ts))
		}
		for _, tg := range ts {
			if !tg.IP.IsValid() || tg.IP.IsUnspecified() || tg.Port == 0 || !slices.Contains([]string{UDP, TCP, TLS}, tg.Transport) {
				t.Fatalf("unusable target %+v", tg)
			}
		}
	})
}

// FuzzOrderSRV checks RFC 2782 ordering for any records and any draws:
// a permutation, priorities never decreasing.
func FuzzOrderSRV(f *testing.F) {
	f.Add([]byte{10, 0, 10, 5, 20, 100}, uint64(1))
	f.Add([]byte{1, 255, 1, 255, 1, 0, 0, 0}, uint64(7))
	f.Fuzz(func(t *testing.T, spec []byte, seed uint64) {
		var recs []*dns.SRV
		for i := 0; i+1 < len(spec) && len(recs) < 64; i += 2 {
			recs = append(recs, &dns.SRV{Priority: uint16(spec[i]), Weight: uint16(spec[i+1]) * 257, Port: uint16(len(recs) + 1)})
		}
		rnd := rand.New(rand.NewPCG(seed, seed))
		got := orderSRV(recs, rnd.IntN)
		if len(got) != len(recs) {
			t.Fatalf("%d records in, %d out", len(recs), len(got))
		}
		seen := map[uint16]bool{}
		for i, s := range got {
			if seen[s.Port] {
				t.Fatalf("record %d twice", s.Port)
			}
			seen[s.Port] = true
			if i > 0 && got[i-1].Priority > s.Priority {
				t.Fatalf("priority %d before %d", got[i-1].Priority, s.Priority)
			}
		}
	})
}

// FuzzParseTarget: any string gives a URI with a host or an error.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"sip:example.com", "example.com:5060", "[2001:db8::1]:5070", "tel:+49", "sips:a@b;transport=tcp", "sip:", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseTarget(s)
		if err != nil {
			return
		}
		if u.Host == "" {
			t.Fatalf("ParseTarget(%q) gave no host and no error", s)
		}
		if _, err := parseRequest(u, []string{UDP, TCP, TLS}); err != nil && errors.Is(err, ErrNoTargets) {
			t.Fatal("parseRequest cannot fail with ErrNoTargets")
		}
	})
}
