package voicemail

// Action is what the listening menu asks the player to do next.
type Action int

// The menu's actions.
const (
	// Play the current message (Menu.Current) from its start.
	Play Action = iota
	// Delete the current message, then play the next.
	Delete
	// Keep marks the current message listened to, then plays the next.
	Keep
	// Done: no message left; say goodbye and hang up.
	Done
	// Ignore: the key means nothing here.
	Ignore
)

// Menu is the state of one listening call: the owner hears the messages
// in turn (new ones newest first, then old ones) and steers with keys:
// 1 replays, 7 deletes, 9 keeps and goes on, # goes on (the message is
// kept, listened to). The end of a message's audio counts as listened to
// but waits for a key up to a time out the player sets, then goes on.
type Menu struct {
	msgs []Message
	cur  int
}

// NewMenu starts at the first of msgs.
func NewMenu(msgs []Message) *Menu { return &Menu{msgs: msgs} }

// Start is the first action.
func (m *Menu) Start() Action {
	if len(m.msgs) == 0 {
		return Done
	}
	return Play
}

// Current is the message being played.
func (m *Menu) Current() (Message, bool) {
	if m.cur >= len(m.msgs) {
		return Message{}, false
	}
	return m.msgs[m.cur], true
}

// Key reacts to a DTMF key and returns the action. Keep and Delete name
// the message they apply to (Current before the call); the menu has moved
// on already.
func (m *Menu) Key(k byte) (Action, Message) {
	msg, ok := m.Current()
	if !ok {
		return Done, Message{}
	}
	switch k {
	case '1':
		return Play, msg
	case '7':
		m.cur++
		return Delete, msg
	case '9', '#':
		m.cur++
		return Keep, msg
	}
	return Ignore, msg
}

// Next is what follows the current message once its audio ended and no
// key came: it is kept, and the menu moves on.
func (m *Menu) Next() (Action, Message) { return m.Key('#') }

// Remaining reports whether a message follows the current position.
func (m *Menu) Remaining() bool { return m.cur < len(m.msgs) }
