// Package isdntest holds test helpers for the ISDN stack: running tshark on
// a capture and reading back what it decoded, as an oracle independent of
// our own decoders.
package isdntest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// Packet is what tshark decoded from one frame: its protocol layers
// ("frame", "lapd", "q931", "tei_management") as tshark's JSON tree.
type Packet struct {
	Layers map[string]any
}

// Has reports whether tshark decoded the named layer in this frame.
func (p Packet) Has(layer string) bool {
	_, ok := p.Layers[layer]
	return ok
}

// Fields returns every value of the named field (e.g. "q931.message_type")
// anywhere in the layer's tree, in document order, information element
// subtrees included.
func (p Packet) Fields(layer, field string) []string {
	var out []string
	collect(p.Layers[layer], field, &out)
	return out
}

// Field returns the first value of the named field, or "" when absent.
func (p Packet) Field(layer, field string) string {
	if v := p.Fields(layer, field); len(v) > 0 {
		return v[0]
	}
	return ""
}

func collect(v any, field string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// tshark's objects keep document order only in the text; sorting
		// keeps the result stable for repeated fields in sibling subtrees.
		sort.Strings(keys)
		for _, k := range keys {
			if k == field {
				appendValues(v[k], out)
				continue
			}
			collect(v[k], field, out)
		}
	case []any:
		for _, e := range v {
			collect(e, field, out)
		}
	}
}

func appendValues(v any, out *[]string) {
	switch v := v.(type) {
	case string:
		*out = append(*out, v)
	case []any:
		for _, e := range v {
			appendValues(e, out)
		}
	}
}

// Tshark returns tshark's path, skipping the test when it is missing
// (scripts/install-deps.sh installs it).
func Tshark(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (scripts/install-deps.sh installs it)")
	}
	return p
}

// Decode runs tshark on a pcap file and returns the decoded frames.
func Decode(t testing.TB, pcapPath string) []Packet {
	t.Helper()
	out := run(t, "-r", pcapPath, "-T", "json", "-J", "frame lapd q931 tei_management")
	var raw []struct {
		Source struct {
			Layers map[string]any `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("decoding tshark's json: %v\n%s", err, out)
	}
	pkts := make([]Packet, len(raw))
	for i, r := range raw {
		pkts[i] = Packet{Layers: r.Source.Layers}
	}
	return pkts
}

// Problems runs tshark's malformed-packet and expert-info check and returns
// what it printed: one line per frame tshark found malformed or warned
// about. A clean capture returns "".
func Problems(t testing.TB, pcapPath string) string {
	t.Helper()
	out := run(t, "-r", pcapPath, "-Y", `_ws.malformed || _ws.expert.severity >= "warning"`,
		"-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message")
	return strings.TrimSpace(string(out))
}

// CheckClean fails the test when tshark finds a malformed frame or an
// expert warning in the capture.
func CheckClean(t testing.TB, pcapPath string) {
	t.Helper()
	if p := Problems(t, pcapPath); p != "" {
		t.Errorf("tshark found problems in %s:\n%s", pcapPath, p)
	}
}

func run(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(Tshark(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v", fmt.Errorf("running tshark %s: %w\n%s", strings.Join(args, " "), err, stderr.String()))
	}
	return out
}
