package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDocs keeps docs/CONFIG.md in step with the schema: every YAML key is
// in its table, and its examples parse and validate.
func TestDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, key := range yamlKeys(reflect.TypeFor[Config](), "") {
		if !strings.Contains(text, "| `"+key+"` |") {
			t.Errorf("docs/CONFIG.md has no table row for %q", key)
		}
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(text, -1)
	if len(blocks) < 2 {
		t.Fatalf("docs/CONFIG.md has %d YAML examples, want 2", len(blocks))
	}
	for i, b := range blocks {
		c, err := Parse("CONFIG.md example", []byte(b[1]))
		if err != nil {
			t.Errorf("example %d: %v", i, err)
			continue
		}
		if err := c.Validate(); err != nil {
			t.Errorf("example %d: %v", i, err)
		}
	}
	full, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Parse("example", []byte(blocks[0][1]))
	if err == nil && !reflect.DeepEqual(stripSrc(ex), stripSrc(full)) {
		t.Error("the complete example in docs/CONFIG.md differs from testdata/full.yaml")
	}
}

// yamlKeys lists the documented key paths of t: "sip.listen",
// "extensions[].number", ...
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" {
			continue
		}
		key := prefix + name
		switch {
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, key)
			out = append(out, yamlKeys(f.Type.Elem(), key+".")...)
		case f.Type.Kind() == reflect.Struct:
			out = append(out, yamlKeys(f.Type, key+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, key)
			out = append(out, yamlKeys(f.Type.Elem(), key+"[].")...)
		default:
			out = append(out, key)
		}
	}
	return out
}
