package heartbeat

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var testKey = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

func samplePacket() packet {
	return packet{
		Node:        "a",
		Path:        "crossover",
		Incarnation: 0x0102030405060708,
		Seq:         42,
		Sent:        time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano(),
		Echo:        echo{Incarnation: 99, Seq: 41, Sent: 1234567890, Hold: 20e6, Term: 6},
		Beat: Beat{
			Role:            RoleActive,
			Term:            7,
			StoreSeq:        1 << 40,
			ConfigVersion:   3,
			Flags:           GatewayOK | HandoverRequest,
			WatchdogTimeout: 5 * time.Second,
		},
	}
}

func TestSealOpen(t *testing.T) {
	aead, err := newAEAD(testKey)
	if err != nil {
		t.Fatal(err)
	}
	long := samplePacket()
	long.Node = strings.Repeat("n", MaxNameLen)
	long.Path = strings.Repeat("p", maxPathLen)
	long.Beat.Flags = flagMask
	long.Beat.Role = RoleMaintenance
	zero := packet{Node: "b", Path: "lan"}
	for _, p := range []packet{samplePacket(), long, zero} {
		b, err := seal(aead, rand.Reader, &p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > maxDatagram {
			t.Errorf("datagram of %d bytes, over the %d maximum", len(b), maxDatagram)
		}
		got, err := open(aead, b)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if got != p {
			t.Errorf("open(seal(p)) = %+v, want %+v", got, p)
		}
	}
}

func TestSealRefuses(t *testing.T) {
	aead, _ := newAEAD(testKey)
	tests := []struct {
		name string
		mod  func(*packet)
	}{
		{"no node", func(p *packet) { p.Node = "" }},
		{"long node", func(p *packet) { p.Node = strings.Repeat("n", MaxNameLen+1) }},
		{"no path", func(p *packet) { p.Path = "" }},
		{"long path", func(p *packet) { p.Path = strings.Repeat("p", maxPathLen+1) }},
		{"negative watchdog", func(p *packet) { p.Beat.WatchdogTimeout = -time.Second }},
		{"huge watchdog", func(p *packet) { p.Beat.WatchdogTimeout = 1 << 62 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePacket()
			tt.mod(&p)
			if b, err := seal(aead, rand.Reader, &p); err == nil {
				t.Errorf("sealed %d bytes", len(b))
			}
		})
	}
	p := samplePacket()
	if _, err := seal(aead, bytes.NewReader(nil), &p); err == nil {
		t.Error("sealed without a nonce")
	}
}

func TestOpenRejects(t *testing.T) {
	aead, _ := newAEAD(testKey)
	other := testKey
	other[0] ^= 1
	otherAEAD, _ := newAEAD(other)
	p := samplePacket()
	good, err := seal(aead, rand.Reader, &p)
	if err != nil {
		t.Fatal(err)
	}
	fromOther, _ := seal(otherAEAD, rand.Reader, &p)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }

	// sealRaw seals an arbitrary payload, to reach the decoder's checks.
	sealRaw := func(payload []byte) []byte {
		b := make([]byte, headerLen+nonceLen)
		copy(b, magic)
		b[len(magic)] = Version
		return aead.Seal(b, b[headerLen:], payload, b[:headerLen])
	}
	payload, _ := encodePayload(nil, &p)
	withPayload := func(f func(b []byte)) []byte {
		q := bytes.Clone(payload)
		f(q)
		return sealRaw(q)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errMalformed},
		{"not ours", []byte("OPTIONS sip:a SIP/2.0\r\n"), errMalformed},
		{"magic only", []byte(magic), errMalformed},
		{"header only", good[:headerLen], errMalformed},
		{"version 2", mod(func(b []byte) []byte { b[4] = 2; return b }), errVersion},
		{"version 0", mod(func(b []byte) []byte { b[4] = 0; return b }), errVersion},
		{"truncated", good[:len(good)-1], errAuth},
		{"too short for a tag", good[:headerLen+nonceLen+tagLen-1], errMalformed},
		{"too long", append(bytes.Clone(good), make([]byte, maxDatagram)...), errMalformed},
		{"flipped nonce bit", mod(func(b []byte) []byte { b[headerLen] ^= 1; return b }), errAuth},
		{"flipped payload bit", mod(func(b []byte) []byte { b[headerLen+nonceLen+3] ^= 0x80; return b }), errAuth},
		{"flipped tag bit", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), errAuth},
		{"another key", fromOther, errAuth},
		{"short payload", sealRaw(payload[:fixedLen-1]), errMalformed},
		{"unknown role", withPayload(func(b []byte) { b[92] = byte(roleCount) }), errMalformed},
		{"unknown flag", withPayload(func(b []byte) { b[93] = 0x80 }), errMalformed},
		{"negative hold", withPayload(func(b []byte) { b[48] = 0x80 }), errMalformed},
		{"node length zero", withPayload(func(b []byte) { b[94] = 0 }), errMalformed},
		{"node length long", withPayload(func(b []byte) { b[94] = MaxNameLen + 1 }), errMalformed},
		{"path length zero", withPayload(func(b []byte) { b[95] = 0 }), errMalformed},
		{"path length long", withPayload(func(b []byte) { b[95] = maxPathLen + 1 }), errMalformed},
		{"names longer than payload", withPayload(func(b []byte) { b[94]++ }), errMalformed},
		{"trailing byte", sealRaw(append(bytes.Clone(payload), 0)), errMalformed},
		{"node not UTF-8", withPayload(func(b []byte) { b[fixedLen] = 0xff }), errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := open(aead, tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("open = %+v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{RoleActive.String(), "active"},
		{Role(200).String(), "role(200)"},
		{Flags(0).String(), "none"},
		{(Goodbye | GatewayOK).String(), "goodbye|gateway-ok"},
		{(Maintenance | 0x80).String(), "maintenance|0x80"},
		{(Healthy | Goodbye).String(), "goodbye|healthy"},
		{ReasonWrongKey.String(), "twin with a wrong pairing key"},
		{PeerSilent.String(), "peer silent"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func FuzzOpen(f *testing.F) {
	aead, _ := newAEAD(testKey)
	p := samplePacket()
	// A fixed nonce: every fuzzing process must know the same datagram.
	good, _ := seal(aead, bytes.NewReader(make([]byte, nonceLen)), &p)
	f.Add(good, uint16(0), byte(0))
	f.Add(good, uint16(20), byte(1))
	f.Add([]byte(magic+"\x01"), uint16(0), byte(0))
	f.Add([]byte{}, uint16(0), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, pos uint16, flip byte) {
		// Arbitrary bytes: never a panic, and nothing forged passes.
		if got, err := open(aead, b); err == nil && !bytes.Equal(b, good) {
			// Only a datagram sealed under the key can open; the
			// fuzzer cannot make one, so this is a forgery.
			t.Fatalf("forged datagram accepted: %+v", got)
		}
		// The good datagram with one byte changed is always rejected.
		if len(b) > 0 && flip != 0 {
			tampered := bytes.Clone(good)
			tampered[int(pos)%len(tampered)] ^= flip
			if got, err := open(aead, tampered); err == nil {
				t.Fatalf("tampered datagram (byte %d ^ %#x) accepted: %+v", int(pos)%len(tampered), flip, got)
			}
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	p := samplePacket()
	good, _ := encodePayload(nil, &p)
	f.Add(good)
	f.Add(good[:fixedLen])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodePayload(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("decode error %v is not errMalformed", err)
			}
			return
		}
		// What decodes encodes back to the same bytes: one encoding per
		// payload, no field silently dropped.
		again, err := encodePayload(nil, &got)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", got, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decode/encode changed the payload:\n%x\n%x", b, again)
		}
	})
}

// FuzzReceive feeds arbitrary datagrams to a node's receive path: it must
// count them and never take them for a live twin.
func FuzzReceive(f *testing.F) {
	h, err := New(Config{
		Node: "b", Key: testKey,
		Paths: []Path{{Name: "crossover", Local: netip.MustParseAddrPort("127.0.0.1:0"), Peer: netip.MustParseAddrPort("127.0.0.1:9")}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	aead, _ := newAEAD(testKey)
	p := samplePacket()
	zero := bytes.NewReader(make([]byte, 10*nonceLen))
	for _, node := range []string{"a", "b"} {
		p.Node = node
		b, _ := seal(aead, zero, &p)
		f.Add(b)
	}
	f.Add([]byte("TPHB\x01"))
	from := netip.MustParseAddrPort("127.0.0.1:7450")
	f.Fuzz(func(t *testing.T, b []byte) {
		before := h.Peer()
		h.receive(h.paths[0], b, from)
		after := h.Peer()
		if after.Heard || after.Paths[0].Up {
			t.Fatalf("a datagram no live twin sent brought the twin up: %+v", after)
		}
		counted := func(v PeerView) uint64 { return v.Rejected.Total() + v.Paths[0].Unverified }
		if counted(after) != counted(before)+1 {
			t.Fatalf("datagram not counted once: before %+v, after %+v", before, after)
		}
	})
}
