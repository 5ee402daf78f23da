package e2e

import (
	"testing"
	"time"
)

// TestScenarios proves the sipp scenarios against each other, without the
// PBX, so that a failure against the PBX points at the PBX and not at a
// scenario. The selftest/ doubles stand in for the PBX's digest challenges.
func TestScenarios(t *testing.T) {
	needTools(t, "sipp")
	tests := []struct {
		name       string
		server     sippOpts
		client     sippOpts
		wantClient int
	}{
		{
			name:   "register",
			server: sippOpts{scenario: "selftest/registrar.xml", keys: map[string]string{"user": "100", "pass": "right"}},
			client: sippOpts{scenario: "register.xml", service: "100", user: "100", pass: "right", keys: map[string]string{"expires": "300"}},
		},
		{
			name:   "register over TCP",
			server: sippOpts{scenario: "selftest/registrar.xml", tcp: true, keys: map[string]string{"user": "100", "pass": "right"}},
			client: sippOpts{scenario: "register.xml", tcp: true, service: "100", user: "100", pass: "right", keys: map[string]string{"expires": "300"}},
		},
		{
			name:   "register rejected",
			server: sippOpts{scenario: "selftest/registrar.xml", keys: map[string]string{"user": "100", "pass": "right"}},
			client: sippOpts{scenario: "register-rejected.xml", service: "100", user: "100", pass: "wrong", keys: map[string]string{"expires": "300"}},
		},
		{
			name:       "register with a wrong password fails register.xml",
			server:     sippOpts{scenario: "selftest/registrar.xml", keys: map[string]string{"user": "100", "pass": "right"}},
			client:     sippOpts{scenario: "register.xml", service: "100", user: "100", pass: "wrong", keys: map[string]string{"expires": "300"}},
			wantClient: 1,
		},
		{
			name:   "call with auth, caller hangs up",
			server: sippOpts{scenario: "selftest/uas-auth.xml", service: "101"},
			client: sippOpts{scenario: "uac.xml", service: "101", user: "100", pass: "right", pause: 200 * time.Millisecond, keys: caller(alice)},
		},
		{
			name:   "call, caller hangs up",
			server: sippOpts{scenario: "uas.xml", service: "101"},
			client: sippOpts{scenario: "uac.xml", service: "101", pause: 200 * time.Millisecond, keys: caller(alice)},
		},
		{
			name:   "call, callee hangs up",
			server: sippOpts{scenario: "uas-bye.xml", service: "101", pause: 200 * time.Millisecond},
			client: sippOpts{scenario: "uac-wait-bye.xml", service: "101", keys: caller(alice)},
		},
		{
			name:   "call cancelled while ringing",
			server: sippOpts{scenario: "uas-cancel.xml", service: "101"},
			client: sippOpts{scenario: "uac-cancel.xml", service: "101", pause: 200 * time.Millisecond, keys: caller(alice)},
		},
		{
			name:   "call requiring 100rel, reliable early media",
			server: sippOpts{scenario: "uas-100rel.xml", service: "101"},
			client: sippOpts{scenario: "uac-100rel.xml", service: "101", pause: 200 * time.Millisecond, keys: caller(alice)},
		},
		{
			name:   "callee busy",
			server: sippOpts{scenario: "uas-busy.xml", service: "101"},
			client: sippOpts{scenario: "uac-busy.xml", service: "101", keys: caller(alice)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSipp(t, tt.server)
			srv.waitBound()
			tt.client.remote = "127.0.0.1:" + itoa(srv.port)
			runSipp(t, tt.client, tt.wantClient)
			if tt.wantClient == 0 {
				srv.wait(0)
			}
		})
	}
}
