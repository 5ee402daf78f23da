package voicemail

import (
	"strings"
	"testing"
)

func TestDigits(t *testing.T) {
	ev := func(code byte, end bool, dur uint16) []byte {
		b := []byte{code, 10, byte(dur >> 8), byte(dur)}
		if end {
			b[1] |= 0x80
		}
		return b
	}
	type in struct {
		ts      uint32
		payload []byte
	}
	tests := []struct {
		name string
		in   []in
		want string
	}{
		{"one key in many packets", []in{{100, ev(7, false, 160)}, {100, ev(7, false, 320)}, {100, ev(7, true, 480)}, {100, ev(7, true, 480)}, {100, ev(7, true, 480)}}, "7"},
		{"two keys", []in{{100, ev(1, false, 160)}, {100, ev(1, true, 320)}, {900, ev(11, false, 160)}, {900, ev(11, true, 320)}}, "1#"},
		{"same key twice", []in{{100, ev(5, true, 160)}, {900, ev(5, true, 160)}}, "55"},
		{"star and letters", []in{{1, ev(10, false, 1)}, {2, ev(12, false, 1)}, {3, ev(15, false, 1)}}, "*AD"},
		{"not a key", []in{{1, ev(16, false, 1)}, {2, ev(200, false, 1)}}, ""},
		{"short payload", []in{{1, []byte{1, 2}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d digits
			var got []byte
			for _, p := range tc.in {
				if k := d.press(p.ts, p.payload); k != 0 {
					got = append(got, k)
				}
			}
			if string(got) != tc.want {
				t.Errorf("keys %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte{7, 0x8a, 1, 0xe0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvent(b)
		if err != nil {
			if len(b) >= 4 {
				t.Fatalf("a %d-byte payload refused: %v", len(b), err)
			}
			return
		}
		if k := e.Digit(); e.Code <= 15 && k == 0 || e.Code > 15 && k != 0 {
			t.Fatalf("code %d gave key %q", e.Code, k)
		}
	})
}

func TestInfoDigit(t *testing.T) {
	for body, want := range map[string]byte{"Signal=7\r\nDuration=160\r\n": '7', "signal = #\n": '#', "Signal=77\n": 0, "Duration=1": 0, "": 0} {
		if got := infoDigit([]byte(body)); got != want {
			t.Errorf("%q: %q, want %q", body, got, want)
		}
	}
}

func FuzzInfoDigit(f *testing.F) {
	f.Add([]byte("Signal=7\r\nDuration=160\r\n"))
	f.Add([]byte("Signal= *\n"))
	f.Add([]byte("=\n=="))
	f.Fuzz(func(t *testing.T, body []byte) {
		if k := infoDigit(body); k != 0 && !strings.ContainsRune("0123456789*#ABCD", rune(k)) {
			t.Fatalf("key %q from %q", k, body)
		}
	})
}
