package registrar

import (
	"log/slog"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// txRecorder is a server transaction that records what the registrar
// does with it, in order.
type txRecorder struct {
	sip.ServerTransaction // nil: only the methods below are used
	events                []string
}

func (t *txRecorder) Respond(res *sip.Response) error {
	t.events = append(t.events, res.StartLine())
	return nil
}
func (t *txRecorder) Terminate() { t.events = append(t.events, "terminate") }

// userAuth accepts every request as the given user, or answers 401 when
// the user is empty.
type userAuth string

func (u userAuth) Authenticate(req *sip.Request, tx sip.ServerTransaction, _ bool) (string, bool) {
	if u == "" {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 401, "Unauthorized", nil))
		return "", false
	}
	return string(u), true
}

// TestServeRegisterEndsTheTransaction: whatever the answer, the server
// transaction is terminated right after the one final response, so it
// does not linger for Timer J (32 s of memory per REGISTER).
func TestServeRegisterEndsTheTransaction(t *testing.T) {
	tests := []struct {
		name    string
		user    userAuth
		contact string
		want    string
	}{
		{"registered", "100", "<sip:100@10.0.0.5>", "SIP/2.0 200 OK"},
		{"challenged", "", "<sip:100@10.0.0.5>", "SIP/2.0 401 Unauthorized"},
		{"another extension", "101", "<sip:100@10.0.0.5>", "SIP/2.0 403 Forbidden (credentials are for another extension)"},
		{"bad contact", "100", "<tel:+4930123>", "SIP/2.0 400 Bad Request (Contact must be a sip: or sips: URI)"},
		{"interval too brief", "100", "<sip:100@10.0.0.5>;expires=5", "SIP/2.0 423 Interval Too Brief"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := location.New(newMemStore(), nil)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := New(Options{Location: loc, Auth: tc.user, Directory: testDir, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			tx := &txRecorder{}
			reg.ServeRegister(rawRegister(t, "c1", tc.contact), tx)
			if len(tx.events) != 2 || tx.events[0] != tc.want || tx.events[1] != "terminate" {
				t.Fatalf("transaction saw %q, want [%q terminate]", tx.events, tc.want)
			}
		})
	}
}
