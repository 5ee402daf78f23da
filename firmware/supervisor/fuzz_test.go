package supervisor

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLineSplitter feeds arbitrary output, cut into two writes, to the
// splitter: it must never panic, emit one line per newline (plus a last
// partial line), keep lines short and valid UTF-8, and pass short clean
// lines through unchanged.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("a\nb\n"), 1, 8)
	f.Add([]byte("\xff\xfe\r\n\r\n"), 0, 2)
	f.Add([]byte(strings.Repeat("x", 100)+"\nshort\n"), 50, 16)
	f.Add([]byte("h\u00e9llo w\u00f6rld\n"), 3, 4)
	f.Fuzz(func(t *testing.T, data []byte, cut, maxLine int) {
		maxLine = 1 + abs(maxLine)%64
		cut = abs(cut) % (len(data) + 1)
		var got []string
		l := &lineSplitter{max: maxLine, emit: func(s string) { got = append(got, s) }}
		if n, err := l.Write(data[:cut]); n != cut || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if n, err := l.Write(data[cut:]); n != len(data)-cut || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		l.Flush()

		raw := bytes.Split(data, []byte("\n"))
		if raw[len(raw)-1] == nil || len(raw[len(raw)-1]) == 0 {
			raw = raw[:len(raw)-1]
		}
		if len(got) != len(raw) {
			t.Fatalf("%d lines from %q, want %d: %q", len(got), data, len(raw), got)
		}
		for i, s := range got {
			if strings.Contains(s, "\n") || !utf8.ValidString(s) {
				t.Errorf("line %q has a newline or is not UTF-8", s)
			}
			// Each input byte becomes at most one U+FFFD (3 bytes).
			if len(s) > 3*maxLine+len(truncMark) {
				t.Errorf("line of %d bytes, max %d", len(s), maxLine)
			}
			in := bytes.TrimSuffix(raw[i], []byte("\r"))
			if len(raw[i]) <= maxLine && utf8.Valid(in) && s != string(in) {
				t.Errorf("line %q came out as %q", in, s)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // math.MinInt
			return 0
		}
		return -n
	}
	return n
}

// FuzzParseChildEnv checks that any environment gives a usable result or
// an error, never a panic or a nonsense watchdog.
func FuzzParseChildEnv(f *testing.F) {
	f.Add("3", "5s", "")
	f.Add("3", "5s", "reset")
	f.Add("", "", "")
	f.Add("2", "1s", "")
	f.Add("3", "-1s", "")
	f.Add("99999999999999999999", "1h", "x")
	f.Fuzz(func(t *testing.T, fd, timeout, boot string) {
		env := map[string]string{EnvWatchdogFD: fd, EnvWatchdogTimeout: timeout, EnvWatchdogBoot: boot}
		got, err := parseChildEnv(func(k string) string { return env[k] })
		if err != nil {
			return
		}
		if got.fd < 3 || got.timeout <= 0 || got.reset != (boot == "reset") {
			t.Errorf("parseChildEnv(%q, %q, %q) = %+v", fd, timeout, boot, got)
		}
	})
}
