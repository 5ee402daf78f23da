package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file: where it is and what.
type Problem struct {
	// File is the name the config was parsed under ("" when built in code).
	File string
	// Line is 1-based; 0 when unknown (configs built in code).
	Line int
	// Field is the path of the field, e.g. "extensions[1].secret" (list
	// indexes count from 0); "" for problems with the file as a whole.
	Field string
	// Msg says what is wrong, in words an installer understands.
	Msg string
}

// String formats the problem as "file:line: field: msg", leaving out the
// parts that are not known.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem found in a config, so an installer can fix them
// all in one go. Parse, Load and Validate return it (as *Error).
type Error struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems for one file, using the line positions
// recorded while parsing.
type problems struct {
	src  *source
	list []Problem
}

func (ps *problems) addAt(line int, field, format string, args ...any) {
	p := Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	if ps.src != nil {
		p.File = ps.src.file
	}
	ps.list = append(ps.list, p)
}

// add records a problem at the line where field (or, when the field was not
// in the file, its nearest enclosing field) was written.
func (ps *problems) add(field, format string, args ...any) {
	ps.addAt(ps.src.line(field), field, format, args...)
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	// In file order, which is how an installer works through them.
	sort.SliceStable(ps.list, func(i, j int) bool { return ps.list[i].Line < ps.list[j].Line })
	return &Error{Problems: ps.list}
}

// source is where a parsed config came from: the file name and the line of
// every field path seen.
type source struct {
	file  string
	lines map[string]int
}

// line returns the line of field, or of the nearest enclosing field that
// was in the file, or 0.
func (s *source) line(field string) int {
	if s == nil {
		return 0
	}
	for field != "" {
		if l, ok := s.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return s.lines[""]
}
