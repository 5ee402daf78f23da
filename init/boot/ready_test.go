package boot

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestListeningLine(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{"SIP listening on udp:[::]:5060\n", true},
		{"SIP listening on tls:10.0.0.1:5061 (served while this box is active)\n", true},
		{"SIP dispatcher listening on udp:0.0.0.0:5060\n", true},
		{"First run: created a starter config (version 1) with extensions 100\n", false},
		{"  SIP listening on udp:[::]:5060\n", false}, // not at the start of a line
		{"SIP listening\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ListeningLine([]byte(tt.line)); got != tt.want {
			t.Errorf("ListeningLine(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

// pieces is a writer that keeps each write apart.
type pieces struct{ writes []string }

func (p *pieces) Write(b []byte) (int, error) {
	p.writes = append(p.writes, string(b))
	return len(b), nil
}

func TestPassOn(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	tests := []struct {
		name   string
		in     string
		writes []string
		heard  bool
	}{
		{"first run, then listening", "First run: created a starter config\nSIP listening on udp:[::]:5060\nSIP listening on tcp:[::]:5060\n",
			[]string{"First run: created a starter config\n", "SIP listening on udp:[::]:5060\n", "SIP listening on tcp:[::]:5060\n"}, true},
		{"nothing said", "First run\n", []string{"First run\n"}, false},
		{"no newline at the end", "SIP listening on udp:[::]:5060", []string{"SIP listening on udp:[::]:5060"}, true},
		{"the words inside a long line", long + "SIP listening on udp:x\n", []string{long[:maxLine], long[maxLine:] + "SIP listening on udp:x\n"}, false},
		{"after a long line", long + "\nSIP listening on udp:x\n", []string{long[:maxLine], long[maxLine:] + "\n", "SIP listening on udp:x\n"}, true},
		{"empty", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out pieces
			heard := make(chan struct{})
			if err := passOn(strings.NewReader(tt.in), &out, heard); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out.writes, tt.writes) {
				t.Errorf("writes %q, want %q", out.writes, tt.writes)
			}
			select {
			case <-heard:
				if !tt.heard {
					t.Error("heard closed, but no line said the PBX listens")
				}
			default:
				if tt.heard {
					t.Error("heard still open after the PBX said it listens")
				}
			}
		})
	}
}

// failing is a writer that refuses every write.
type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("console gone") }

func TestPassOnErrors(t *testing.T) {
	if err := passOn(strings.NewReader("a\n"), failing{}, nil); err == nil || !strings.Contains(err.Error(), "console gone") {
		t.Errorf("passOn to a failing writer: %v", err)
	}
	boom := errors.New("boom")
	var out bytes.Buffer
	err := passOn(io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)), &out, nil)
	if !errors.Is(err, boom) || out.String() != "a\n" {
		t.Errorf("passOn from a failing reader: %v, passed on %q", err, out.String())
	}
}

func FuzzPassOn(f *testing.F) {
	f.Add([]byte("First run\nSIP listening on udp:[::]:5060\n"))
	f.Add([]byte("SIP dispatcher listening on udp:x"))
	f.Add(bytes.Repeat([]byte("SIP listening on "), 300))
	f.Add([]byte("\n\n\r\n\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		heard := make(chan struct{})
		if err := passOn(iotest.OneByteReader(bytes.NewReader(in)), &out, heard); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("passed on %q, read %q", out.Bytes(), in)
		}
	})
}

func TestSplitDataModules(t *testing.T) {
	tests := []struct {
		name      string
		mods      []string
		now, data []string
	}{
		{"qemu board", []string{"virtio_pci", "virtio_net", "i6300esb", "virtio_blk", "crc32c_generic", "ext4"},
			[]string{"virtio_pci", "virtio_net", "i6300esb", "virtio_blk"}, []string{"crc32c_generic", "ext4"}},
		{"twice, from the command line too", []string{"virtio_blk", "ext4", "virtio_blk", "crc32c_generic", "ext4"},
			[]string{"virtio_blk", "virtio_blk"}, []string{"ext4", "crc32c_generic", "ext4"}},
		{"no file system", []string{"igb", "sp5100_tco"}, []string{"igb", "sp5100_tco"}, nil},
		{"none", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, data := SplitDataModules(tt.mods)
			if !slices.Equal(now, tt.now) || !slices.Equal(data, tt.data) {
				t.Errorf("SplitDataModules(%v) = %v, %v; want %v, %v", tt.mods, now, data, tt.now, tt.data)
			}
		})
	}
}
