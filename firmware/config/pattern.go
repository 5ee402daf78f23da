package config

import (
	"fmt"
	"strings"
)

// Pattern is a compiled dialling pattern of a route (see Route.Pattern).
type Pattern struct {
	src   string
	elems []string // the characters each position accepts
	tail  byte     // 0, '.' (one or more more) or '!' (zero or more more)
}

// Match results.
type Match int

// A number matches a pattern fully, is the beginning of a number that
// would (more digits may come), or does not match at all.
const (
	NoMatch Match = iota
	Partial
	Full
)

const dialChars = "0123456789*#+"

// ParsePattern compiles a route pattern: digits, "*", "#" and "+" stand for
// themselves; X is any digit, Z 1-9, N 2-9 (any case); "[...]" a class of
// digits and ranges ("[1-4]", "[137]"); a final "." one or more further
// characters, a final "!" zero or more.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{src: s}
	if s == "" {
		return p, fmt.Errorf("missing: a pattern such as 0. (an outside line) or 112")
	}
	if len(s) > MaxPatternLen {
		return p, fmt.Errorf("%q is longer than %d characters", s, MaxPatternLen)
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case strings.IndexByte(dialChars, ch) >= 0:
			p.elems = append(p.elems, string(ch))
		case ch == 'X' || ch == 'x':
			p.elems = append(p.elems, "0123456789")
		case ch == 'Z' || ch == 'z':
			p.elems = append(p.elems, "123456789")
		case ch == 'N' || ch == 'n':
			p.elems = append(p.elems, "23456789")
		case ch == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return p, fmt.Errorf("%q: [ without ]", s)
			}
			set, err := digitClass(s[i+1 : i+end])
			if err != nil {
				return p, fmt.Errorf("%q: %w", s, err)
			}
			p.elems = append(p.elems, set)
			i += end
		case (ch == '.' || ch == '!') && i == len(s)-1:
			p.tail = ch
		case ch == '.' || ch == '!':
			return p, fmt.Errorf("%q: %c may only end the pattern", s, ch)
		default:
			return p, fmt.Errorf("%q: %q is not allowed (digits, * # +, X Z N, [..], and a final . or !)", s, ch)
		}
	}
	if len(p.elems) == 0 && p.tail != '.' {
		return p, fmt.Errorf("%q matches every number, even none: write . for any number", s)
	}
	return p, nil
}

// digitClass expands the inside of [...]: digits and ranges like 1-4.
func digitClass(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "", fmt.Errorf("[%s]: only digits and ranges like 1-4 go between brackets", s)
		}
		if i+2 < len(s) && s[i+1] == '-' {
			hi := s[i+2]
			if hi < c || hi > '9' {
				return "", fmt.Errorf("[%s]: %c-%c is not a range of digits", s, c, hi)
			}
			for d := c; d <= hi; d++ {
				b.WriteByte(d)
			}
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("[] is empty")
	}
	return b.String(), nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// MinLen is the length of the shortest number the pattern matches.
func (p Pattern) MinLen() int {
	if p.tail == '.' {
		return len(p.elems) + 1
	}
	return len(p.elems)
}

// Match tells whether number matches p fully, partially (it is the start
// of a number that would match), or not at all.
func (p Pattern) Match(number string) Match {
	for i := 0; i < len(number); i++ {
		ch := number[i]
		if strings.IndexByte(dialChars, ch) < 0 {
			return NoMatch
		}
		if i >= len(p.elems) {
			if p.tail == 0 {
				return NoMatch
			}
			continue
		}
		if strings.IndexByte(p.elems[i], ch) < 0 {
			return NoMatch
		}
	}
	switch {
	case len(number) < len(p.elems):
		return Partial
	case p.tail == '.' && len(number) == len(p.elems):
		return Partial
	}
	return Full
}
