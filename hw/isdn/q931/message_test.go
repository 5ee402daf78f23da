package q931

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		wire []byte
	}{
		{"BRI SETUP", Message{CallRef: CallRef{Len: 1, Value: 1}, Type: Setup, IEs: []IE{
			SendingCompleteIE(),
			BearerCapability{Capability: Speech, Layer1: ALawG711}.IE(),
			ChannelID{Channel: 0}.IE(),
			PartyNumber{Type: TypeNational, Plan: PlanISDN, Digits: "301234"}.CallingIE(),
			PartyNumber{Type: TypeUnknown, Plan: PlanISDN, Digits: "22"}.CalledIE(),
		}}, []byte{0x08, 0x01, 0x01, 0x05, 0xa1, 0x04, 0x03, 0x80, 0x90, 0xa3, 0x18, 0x01, 0x83,
			0x6c, 0x08, 0x21, 0x80, '3', '0', '1', '2', '3', '4', 0x70, 0x03, 0x81, '2', '2'}},
		{"PRI CALL PROCEEDING, flag set", Message{CallRef: CallRef{Len: 2, Value: 0x1234, Flag: true}, Type: CallProceeding, IEs: []IE{
			ChannelID{PRI: true, Exclusive: true, Channel: 5}.IE(),
		}}, []byte{0x08, 0x02, 0x92, 0x34, 0x02, 0x18, 0x03, 0xa9, 0x83, 0x85}},
		{"DISCONNECT with cause", Message{CallRef: CallRef{Len: 1, Value: 0x7f}, Type: Disconnect, IEs: []IE{
			Cause{Location: LocUser, Value: CauseNormalClearing}.IE(),
		}}, []byte{0x08, 0x01, 0x7f, 0x45, 0x08, 0x02, 0x80, 0x90}},
		{"RESTART on the global reference", Message{CallRef: Global(2), Type: Restart, IEs: []IE{RestartIndicatorIE(RestartAllInterfaces)}},
			[]byte{0x08, 0x02, 0x00, 0x00, 0x46, 0x79, 0x01, 0x87}},
		{"dummy reference", Message{CallRef: CallRef{}, Type: Information}, []byte{0x08, 0x00, 0x7b}},
		{"STATUS", Message{CallRef: CallRef{Len: 1, Value: 3, Flag: true}, Type: Status, IEs: []IE{
			Cause{Location: LocPublicLocal, Value: CauseWrongState}.IE(), CallStateIE(10),
		}}, []byte{0x08, 0x01, 0x83, 0x7d, 0x08, 0x02, 0x82, 0xe5, 0x14, 0x01, 0x0a}},
		{"PROGRESS with display", Message{CallRef: CallRef{Len: 1, Value: 2}, Type: Progress, IEs: []IE{
			ProgressIndicator{Location: LocPublicLocal, Description: ProgressInbandInfo}.IE(), DisplayIE("Hi"),
		}}, []byte{0x08, 0x01, 0x02, 0x03, 0x1e, 0x02, 0x82, 0x88, 0x28, 0x02, 'H', 'i'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.wire) {
				t.Fatalf("Marshal = % x\n           want % x", b, tt.wire)
			}
			g, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if g.CallRef != tt.m.CallRef || g.Type != tt.m.Type || len(g.IEs) != len(tt.m.IEs) {
				t.Fatalf("Parse = %v, want %v", g, tt.m)
			}
			for i := range g.IEs {
				if g.IEs[i].ID != tt.m.IEs[i].ID || !bytes.Equal(g.IEs[i].Data, tt.m.IEs[i].Data) {
					t.Errorf("IE %d = %+v, want %+v", i, g.IEs[i], tt.m.IEs[i])
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"empty", nil},
		{"other protocol", []byte{0x09, 0x01, 0x01, 0x05}},
		{"call reference length 3", []byte{0x08, 0x03, 0, 0, 0, 0x05}},
		{"call reference length high nibble", []byte{0x08, 0x11, 0x01, 0x05}},
		{"truncated call reference", []byte{0x08, 0x02, 0x01}},
		{"message type bit 8", []byte{0x08, 0x01, 0x01, 0x85}},
		{"IE without length", []byte{0x08, 0x01, 0x01, 0x05, 0x04}},
		{"IE longer than message", []byte{0x08, 0x01, 0x01, 0x05, 0x04, 0x03, 0x80}},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.wire); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse(% x) = %v, want ErrMalformed", tt.name, tt.wire, err)
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	for _, m := range []Message{
		{CallRef: CallRef{Len: 3}, Type: Setup},
		{CallRef: CallRef{Len: 1, Value: 0x80}, Type: Setup},
		{CallRef: CallRef{Len: 2, Value: 0x8000}, Type: Setup},
		{CallRef: CallRef{Len: 0, Value: 1}, Type: Setup},
		{CallRef: CallRef{Len: 1, Value: 1}, Type: 0x85},
		{CallRef: CallRef{Len: 1, Value: 1}, Type: Setup, IEs: []IE{{ID: 0xa1, Data: []byte{1}}}},
		{CallRef: CallRef{Len: 1, Value: 1}, Type: Setup, IEs: []IE{{ID: 0x28, Data: make([]byte, 256)}}},
	} {
		if _, err := m.Marshal(); err == nil {
			t.Errorf("Marshal(%v): no error", m)
		}
	}
}

func TestIEs(t *testing.T) {
	tests := []struct {
		name  string
		ie    IE
		parse func([]byte) (any, error)
		want  any
	}{
		{"bearer speech A-law", BearerCapability{Capability: Speech, Layer1: ALawG711}.IE(), bearer, BearerCapability{Speech, ALawG711}},
		{"bearer digital", BearerCapability{Capability: UnrestrictedDig}.IE(), bearer, BearerCapability{UnrestrictedDig, 0}},
		{"cause", Cause{Location: LocPublicRemote, Value: CauseUserBusy}.IE(), cause, Cause{Location: LocPublicRemote, Value: CauseUserBusy}},
		{"cause with diagnostic", Cause{Location: LocUser, Value: CauseMandatoryIEMissing, Diagnostic: []byte{0x04}}.IE(), cause, Cause{Location: LocUser, Value: CauseMandatoryIEMissing, Diagnostic: []byte{0x04}}},
		{"BRI B2 exclusive", ChannelID{Exclusive: true, Channel: 2}.IE(), channel, ChannelID{Exclusive: true, Channel: 2}},
		{"BRI any", ChannelID{}.IE(), channel, ChannelID{}},
		{"BRI none", ChannelID{None: true}.IE(), channel, ChannelID{None: true}},
		{"PRI channel 30", ChannelID{PRI: true, Exclusive: true, Channel: 30}.IE(), channel, ChannelID{PRI: true, Exclusive: true, Channel: 30}},
		{"PRI any", ChannelID{PRI: true}.IE(), channel, ChannelID{PRI: true}},
		{"progress", ProgressIndicator{Location: LocPrivateLocal, Description: ProgressInbandInfo}.IE(), progress, ProgressIndicator{LocPrivateLocal, ProgressInbandInfo}},
		{"calling restricted", PartyNumber{Type: TypeInternational, Plan: PlanISDN, Presentation: PresentationRestricted, Screening: NetworkProvided, Digits: "4930123"}.CallingIE(), number,
			PartyNumber{Type: TypeInternational, Plan: PlanISDN, Presentation: PresentationRestricted, Screening: NetworkProvided, Digits: "4930123"}},
		{"called keeps only digits", PartyNumber{Type: TypeSubscriber, Plan: PlanISDN, Digits: "1-2 3*#x"}.CalledIE(), number, PartyNumber{Type: TypeSubscriber, Plan: PlanISDN, Digits: "123*#"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.ie.Data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if d := DisplayIE("Müller\n").Data; string(d) != "M?ller?" {
		t.Errorf("display %q", d)
	}
}

func bearer(d []byte) (any, error)   { return ParseBearerCapability(d) }
func cause(d []byte) (any, error)    { return ParseCause(d) }
func channel(d []byte) (any, error)  { return ParseChannelID(d) }
func progress(d []byte) (any, error) { return ParseProgressIndicator(d) }
func number(d []byte) (any, error)   { return ParsePartyNumber(d) }

func TestIERejects(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) (any, error)
		data  []byte
	}{
		{"short bearer", bearer, []byte{0x80}},
		{"short cause", cause, []byte{0x80}},
		{"cause with 3a only", cause, []byte{0x00, 0x80}},
		{"empty channel", channel, nil},
		{"channel with interface id", channel, []byte{0xc1, 0x01}},
		{"PRI channel missing number", channel, []byte{0xa9}},
		{"PRI channel 0", channel, []byte{0xa9, 0x83, 0x80}},
		{"PRI channel map", channel, []byte{0xa9, 0x93, 0x01}},
		{"PRI reserved", channel, []byte{0xa2}},
		{"progress length", progress, []byte{0x80}},
		{"empty number", number, nil},
		{"number without 3a", number, []byte{0x01}},
		{"number with a control character", number, []byte{0x81, '1', 0x07}},
	}
	for _, tt := range tests {
		if _, err := tt.parse(tt.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tt.name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x01, 0x05, 0xa1, 0x04, 0x03, 0x80, 0x90, 0xa3, 0x18, 0x01, 0x83, 0x70, 0x03, 0x81, '2', '2'})
	f.Add([]byte{0x08, 0x02, 0x92, 0x34, 0x02, 0x18, 0x03, 0xa9, 0x83, 0x85})
	f.Add([]byte{0x08, 0x01, 0x7f, 0x45, 0x08, 0x02, 0x80, 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("re-encoding %v: %v", m, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded % x, read % x", again, b)
		}
		for _, ie := range m.IEs {
			// No element decoder may panic on what arrives.
			_, _ = ParseBearerCapability(ie.Data)
			_, _ = ParseCause(ie.Data)
			_, _ = ParseChannelID(ie.Data)
			_, _ = ParseProgressIndicator(ie.Data)
			_, _ = ParsePartyNumber(ie.Data)
		}
	})
}
