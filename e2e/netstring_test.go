package e2e

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestReadNetstring(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // messages read before the error
		wantEOF bool     // the stream ends cleanly after them
	}{
		{"two messages", `5:hello,2:{},`, []string{"hello", "{}"}, true},
		{"empty message", `0:,`, []string{""}, true},
		{"no digits", `:x,`, nil, false},
		{"letter in length", `1a:x,`, nil, false},
		{"missing comma", `3:abc;`, nil, false},
		{"short body", `10:abc`, nil, false},
		{"length too long", `99999999:x,`, nil, false},
		{"over 1 MiB", `2000000:x,`, nil, false},
		{"good then bad", `1:a,x`, []string{"a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in))
			var got []string
			var err error
			for {
				var msg []byte
				msg, err = readNetstring(r)
				if err != nil {
					break
				}
				got = append(got, string(msg))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if (err == io.EOF) != tt.wantEOF {
				t.Errorf("ended with %v, want clean EOF: %v", err, tt.wantEOF)
			}
		})
	}
}

func FuzzReadNetstring(f *testing.F) {
	f.Add([]byte(`5:hello,`))
	f.Add([]byte(`49:{"response":true,"ok":true,"data":"","token":"1"},`))
	f.Add([]byte(`0:,1:a,`))
	f.Add([]byte(`9999999:`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		total := 0
		for {
			msg, err := readNetstring(r)
			if err != nil {
				break
			}
			total += len(msg)
			if total > len(b) {
				t.Fatalf("read %d bytes of messages from %d bytes of input", total, len(b))
			}
		}
	})
}
