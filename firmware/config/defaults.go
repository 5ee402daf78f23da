package config

import (
	"crypto/rand"
	"io"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// Defaults applied by WithDefaults; docs/CONFIG.md lists them too.
const (
	DefaultMinExpires     = 60 * time.Second
	DefaultDefaultExpires = 600 * time.Second
	DefaultMaxExpires     = 3600 * time.Second
	DefaultRingTimeout    = 60 * time.Second
	DefaultNonceLifetime  = 5 * time.Minute
	DefaultMaxContacts    = 5
)

// WithDefaults returns a copy of c with every unset (zero) setting filled
// with its default: realm = node name, min/default/max expires 60s/600s/1h,
// ring timeout 60s, nonce lifetime 5m, max_contacts 5. c is not changed.
// Codecs stay empty when empty: that means "the usual ones" (see SIP.Codecs).
func (c *Config) WithDefaults() *Config {
	out := *c
	out.SIP.Listen = slices.Clone(c.SIP.Listen)
	out.SIP.Codecs = slices.Clone(c.SIP.Codecs)
	out.SIP.DigestAlgorithms = slices.Clone(c.SIP.DigestAlgorithms)
	if c.Cluster != nil {
		cl := *c.Cluster
		cl.withDefaults()
		out.Cluster = &cl
	}
	out.Extensions = slices.Clone(c.Extensions)
	s := &out.SIP
	if s.Realm == "" {
		s.Realm = c.Node.Name
	}
	fill := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	fill(&s.MinExpires, DefaultMinExpires)
	fill(&s.DefaultExpires, DefaultDefaultExpires)
	fill(&s.MaxExpires, DefaultMaxExpires)
	fill(&s.RingTimeout, DefaultRingTimeout)
	fill(&s.NonceLifetime, DefaultNonceLifetime)
	for i := range out.Extensions {
		if out.Extensions[i].MaxContacts == 0 {
			out.Extensions[i].MaxContacts = DefaultMaxContacts
		}
	}
	return &out
}

// Equal reports whether c and o hold the same settings. It ignores where
// they were parsed from, which reflect.DeepEqual does not.
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	a, b := *c, *o
	a.src, b.src = nil, nil
	return reflect.DeepEqual(&a, &b)
}

// secretAlphabet leaves out characters that are easily mistaken for one
// another when read off a screen and typed into a phone (0/O, 1/l/I, 5/S,
// 2/Z, 8/B).
const secretAlphabet = "abcdefghijkmnopqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679"

// SecretLen is the length of generated secrets.
const SecretLen = 16

// Starter returns the first-run config: node "a", SIP on 127.0.0.1:5060
// over UDP and TCP, RTP on 20000-20999, and extensions 100 to 104 named
// "Extension 100" and so on, each with its own random secret of SecretLen
// characters drawn from rnd. rnd is crypto/rand.Reader in production (nil
// means that); should rnd fail, crypto/rand is used instead, so a starter
// config never carries a guessable secret.
func Starter(rnd io.Reader) *Config {
	c := &Config{
		Node: Node{Name: "a"},
		SIP: SIP{
			Listen:   []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"},
			RTPPorts: "20000-20999",
		},
	}
	for n := 100; n <= 104; n++ {
		num := strconv.Itoa(n)
		c.Extensions = append(c.Extensions, Extension{
			Number: num,
			Name:   "Extension " + num,
			Secret: NewSecret(rnd),
		})
	}
	return c
}

// NewSecret returns a random SIP secret of SecretLen characters from an
// alphabet without look-alike characters. rnd as for Starter.
func NewSecret(rnd io.Reader) string {
	if rnd == nil {
		rnd = rand.Reader
	}
	out := make([]byte, 0, SecretLen)
	buf := make([]byte, 32)
	// Rejection sampling keeps every character equally likely.
	limit := 256 - 256%len(secretAlphabet)
	for round := 0; len(out) < SecretLen; round++ {
		if round == 64 {
			rnd = rand.Reader // a reader this skewed is not random
		}
		if _, err := io.ReadFull(rnd, buf); err != nil {
			rnd = rand.Reader
			continue
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < SecretLen {
				out = append(out, secretAlphabet[int(b)%len(secretAlphabet)])
			}
		}
	}
	return string(out)
}
