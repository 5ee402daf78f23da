// Package dialplan decides where a dialled number goes: to an extension,
// out over a route's trunks (with the number the route makes of it), out
// as an emergency call, or nowhere (404, or 484 while the number is still
// the beginning of one that would match). It also maps the called number
// of an inbound trunk call to the extension that rings. It is pure: no
// I/O, no clock; build a Plan from the config with FromConfig.
package dialplan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// Kind is what a dialled number is.
type Kind int

// Kinds of Decision.
const (
	// NotFound: no extension and no route (SIP 404).
	NotFound Kind = iota
	// Incomplete: the start of a number a route would take (SIP 484).
	Incomplete
	// Extension: an extension of this PBX.
	Extension
	// Outbound: out over Trunks, in order.
	Outbound
	// Emergency: out over Trunks (every trunk) in order; never refused.
	Emergency
)

func (k Kind) String() string {
	switch k {
	case Incomplete:
		return "incomplete"
	case Extension:
		return "extension"
	case Outbound:
		return "outbound"
	case Emergency:
		return "emergency"
	}
	return "not found"
}

// Decision is where a dialled number goes.
type Decision struct {
	Kind Kind
	// Extension is the extension's number (Kind Extension).
	Extension string
	// Number is what is sent over the trunks (Outbound, Emergency).
	Number string
	// Trunks to try, in order (Outbound, Emergency).
	Trunks []string
	// Route is the index of the route in the config's routes, or -1 (an
	// emergency number without a route of its own, or no route).
	Route int
}

type route struct {
	config.Route
	pattern config.Pattern
	index   int // in the config's routes
}

// inbound is a trunk's mapping of called numbers to extensions.
type inbound struct {
	dids     map[string]string
	lo, hi   string // DDI range, "" when none
	fallback string
}

// Plan is a compiled dial plan; it is safe for concurrent use.
type Plan struct {
	trunks    []string
	exts      map[string]bool
	emergency []route  // emergency routes, in config order
	routes    []route  // the others, in config order
	numbers   []string // emergency numbers without a route of their own
	in        map[string]inbound
}

// FromConfig builds the plan of a valid config: its trunks and routes as
// config.TrunksAndRoutes derives them, its extensions and the emergency
// numbers of console.emergency.
func FromConfig(c *config.Config) (*Plan, error) {
	trunks, routes := c.TrunksAndRoutes()
	var emergency []string
	if c.Console != nil {
		emergency = c.Console.Emergency
	}
	exts := make([]string, len(c.Extensions))
	for i, e := range c.Extensions {
		exts[i] = e.Number
	}
	return New(trunks, routes, exts, emergency)
}

// New builds a plan. emergency numbers that no emergency route matches go
// out over every trunk as dialled.
func New(trunks []config.TrunkLine, routes []config.Route, extensions, emergency []string) (*Plan, error) {
	p := &Plan{exts: map[string]bool{}, in: map[string]inbound{}}
	for _, e := range extensions {
		p.exts[e] = true
	}
	for _, t := range trunks {
		in := inbound{dids: map[string]string{}, fallback: t.Extension}
		for _, d := range t.DIDs {
			in.dids[strings.TrimPrefix(d.Number, "+")] = d.Extension
		}
		if t.DDI != "" {
			lo, hi, err := config.ParseNumberRange(t.DDI)
			if err != nil {
				return nil, fmt.Errorf("trunk %s: ddi: %w", t.Name, err)
			}
			in.lo, in.hi = lo, hi
		}
		p.trunks = append(p.trunks, t.Name)
		p.in[t.Name] = in
	}
	for i, r := range routes {
		pat, err := config.ParsePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		if r.Strip < 0 {
			return nil, fmt.Errorf("routes[%d]: strip %d is negative", i, r.Strip)
		}
		for _, name := range r.Trunks {
			if !slices.Contains(p.trunks, name) {
				return nil, fmt.Errorf("routes[%d]: no trunk %q", i, name)
			}
		}
		rt := route{Route: r, pattern: pat, index: i}
		rt.Route.Trunks = slices.Clone(r.Trunks)
		if r.Emergency {
			rt.Route.Trunks = everyTrunk(r.Trunks, p.trunks)
			p.emergency = append(p.emergency, rt)
		} else {
			p.routes = append(p.routes, rt)
		}
	}
	for _, n := range emergency {
		covered := slices.ContainsFunc(p.emergency, func(r route) bool { return r.pattern.Match(n) == config.Full })
		if !covered {
			p.numbers = append(p.numbers, n)
		}
	}
	return p, nil
}

// everyTrunk lists first, then every other trunk in config order.
func everyTrunk(first, all []string) []string {
	out := slices.Clone(first)
	for _, t := range all {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Trunks lists the trunk names in config order.
func (p *Plan) Trunks() []string { return slices.Clone(p.trunks) }

// Decide says where a dialled number goes. Emergency routes and numbers
// come first, then extensions, then the routes in order; the first full
// match wins. A number that only begins a match of some route is
// Incomplete unless it is an extension.
func (p *Plan) Decide(dialled string) Decision {
	for _, r := range p.emergency {
		if r.pattern.Match(dialled) == config.Full {
			return p.out(Emergency, r, dialled)
		}
	}
	if slices.Contains(p.numbers, dialled) {
		return Decision{Kind: Emergency, Number: dialled, Trunks: slices.Clone(p.trunks), Route: -1}
	}
	if p.exts[dialled] {
		return Decision{Kind: Extension, Extension: dialled, Route: -1}
	}
	partial := false
	for _, r := range p.routes {
		switch r.pattern.Match(dialled) {
		case config.Full:
			return p.out(Outbound, r, dialled)
		case config.Partial:
			partial = true
		}
	}
	for _, r := range p.emergency {
		if r.pattern.Match(dialled) == config.Partial {
			partial = true
		}
	}
	if partial && dialled != "" {
		return Decision{Kind: Incomplete, Route: -1}
	}
	return Decision{Kind: NotFound, Route: -1}
}

func (p *Plan) out(k Kind, r route, dialled string) Decision {
	n := dialled
	if r.Strip >= len(n) {
		n = ""
	} else {
		n = n[r.Strip:]
	}
	n = r.Add + n
	if n == "" {
		// A route that strips everything sends what was dialled rather
		// than an empty number.
		n = dialled
	}
	return Decision{Kind: k, Number: n, Trunks: slices.Clone(r.Route.Trunks), Route: r.index}
}

// Inbound maps the called number of a call arriving on trunk to the
// extension that rings: a DID (with or without a leading +), else a number
// ending in one of the DDI range that is an extension, else the trunk's
// fallback extension. ok is false when none applies.
func (p *Plan) Inbound(trunk, called string) (ext string, ok bool) {
	in, found := p.in[trunk]
	if !found {
		return "", false
	}
	if e, ok := in.dids[strings.TrimPrefix(called, "+")]; ok {
		return e, true
	}
	if n := len(in.lo); n > 0 && len(called) >= n {
		tail := called[len(called)-n:]
		if tail >= in.lo && tail <= in.hi && strings.Trim(tail, "0123456789") == "" && p.exts[tail] {
			return tail, true
		}
	}
	if in.fallback != "" {
		return in.fallback, true
	}
	return "", false
}
