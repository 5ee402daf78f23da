package pbx

import (
	"log/slog"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
)

// TestExtensionFollowsTheConfig: the extension index is rebuilt with every
// config, so an extension added, changed or removed is seen at once.
func TestExtensionFollowsTheConfig(t *testing.T) {
	cfg := func(exts ...config.Extension) *config.Config {
		return &config.Config{
			Node:       config.Node{Name: "t"},
			SIP:        config.SIP{Listen: []string{"udp:127.0.0.1:5060"}, RTPPorts: "31000-31019"},
			Extensions: exts,
		}
	}
	p, err := New(Options{Config: cfg(config.Extension{Number: "100", Secret: "a"}, config.Extension{Number: "101", Secret: "b"}),
		Store: pbxtest.NewStore(), AuthKey: make([]byte, 32), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		number, secret string
		ok             bool
	}
	check := func(stage string, ws []want) {
		t.Helper()
		for _, w := range ws {
			e, ok := p.Extension(w.number)
			if ok != w.ok || e.Secret != w.secret {
				t.Errorf("%s: Extension(%q) = %q, %v; want %q, %v", stage, w.number, e.Secret, ok, w.secret, w.ok)
			}
			if s, ok := p.secret(w.number); ok != w.ok || s != w.secret {
				t.Errorf("%s: secret(%q) = %q, %v; want %q, %v", stage, w.number, s, ok, w.secret, w.ok)
			}
		}
	}
	check("first config", []want{{"100", "a", true}, {"101", "b", true}, {"102", "", false}, {"", "", false}})
	p.SetConfig(cfg(config.Extension{Number: "101", Secret: "new"}, config.Extension{Number: "102", Secret: "c"}))
	check("second config", []want{{"100", "", false}, {"101", "new", true}, {"102", "c", true}})
}
