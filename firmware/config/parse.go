package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a config file; a branch office needs a few kilobytes.
const MaxFileSize = 1 << 20

// Load reads and parses the config file at path. Like Parse it checks
// syntax, field names and types only; call Validate for the rules.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes one YAML document into a Config. It is strict: unknown keys,
// duplicate keys, values of the wrong type, anchors/aliases and more than
// one document are errors. Every problem found is reported, as an *Error
// whose problems name the file (name), the line and the field path. Parse
// does not apply the rules of Validate, nor defaults.
func Parse(name string, data []byte) (*Config, error) {
	ps := &problems{src: &source{file: name, lines: map[string]int{}}}
	if len(data) > MaxFileSize {
		ps.addAt(0, "", "file is larger than %d bytes", MaxFileSize)
		return nil, ps.err()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.addAt(0, "", "file is empty")
		} else {
			ps.addAt(syntaxProblem(err))
		}
		return nil, ps.err()
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		ps.addAt(more.Line, "", "more than one YAML document (a second one starts here); a config is one document")
		return nil, ps.err()
	} else if !errors.Is(err, io.EOF) {
		ps.addAt(syntaxProblem(err))
		return nil, ps.err()
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	c := &Config{}
	d := &decoder{ps: ps}
	d.decode(root, reflect.ValueOf(c).Elem(), "")
	if err := ps.err(); err != nil {
		return nil, err
	}
	c.src = ps.src
	return c, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 syntax error into a line and a message, in
// the argument order of problems.addAt.
func syntaxProblem(err error) (line int, field, format, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return line, "", "YAML syntax: %s", msg
}

// decoder walks a yaml.Node tree into a value by the yaml struct tags,
// collecting problems instead of stopping at the first.
type decoder struct {
	ps *problems
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if _, seen := d.ps.src.lines[path]; !seen {
		d.ps.src.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		d.ps.addAt(n.Line, path, "aliases (*%s) are not supported; write the value out", n.Value)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent value: keep the zero value (the default)
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.ps.addAt(n.Line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.ps.addAt(n.Line, path, "expected a list, got %s", kindName(n))
			return
		}
		if len(n.Content) == 0 {
			return // [] is the same as leaving the key out
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.decode(e, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.ps.addAt(n.Line, path, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!binary" {
			d.ps.addAt(n.Line, path, "expected text, got %s", kindName(n))
			return
		}
		// The text as written, so that "0100" stays "0100" and 1e3 stays 1e3.
		v.SetString(n.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.ps.addAt(n.Line, path, "expected a whole number, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil || v.OverflowUint(u) {
			d.ps.addAt(n.Line, path, "expected a whole number not below 0, got %s", kindName(n))
			return
		}
		v.SetUint(u)
	default:
		d.ps.addAt(n.Line, path, "field of type %s cannot be read from YAML", v.Type())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.ps.addAt(n.Line, path, "expected a mapping of keys to values, got %s", kindName(n))
		return
	}
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.ps.addAt(k.Line, path, "a key must be a plain word, got %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.ps.addAt(k.Line, path, "merge keys (<<) are not supported; write the values out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.ps.addAt(k.Line, path, "key %q given twice (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		fi, ok := fields[k.Value]
		if !ok {
			d.ps.addAt(k.Line, path, "unknown field %q", k.Value)
			continue
		}
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		d.ps.src.lines[sub] = k.Line
		d.decode(val, v.Field(fi), sub)
	}
}

// kindName describes a node for an error message: its text for scalars,
// "a list" or "a mapping" otherwise.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	default:
		return "nothing"
	}
}

// Marshal writes c as YAML that Parse reads back to the same Config.
func Marshal(c *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return b.Bytes(), nil
}
