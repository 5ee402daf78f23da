package tui

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
)

func TestRunAccessible(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
		check  func(t *testing.T, c *config.Config, out string)
	}{
		{"standalone in German with errors and going back", []string{
			"2",     // Deutsch
			"",      // single box
			"Büro",  // bad name
			"buero", // good name
			"",      // static
			"10.0.0.21/24",
			"10.0.1.1", // not in the subnet
			"-",        // back to the address
			"10.0.1.21/24",
			"10.0.1.1",
			"",
			"123456", // weak
			"271828", "271828",
			"", "",
			"200-204",
			"2", // no CSV
			"3", "4930111,4930112",
			"110 112",
			"",    // not yes: review again
			"yes", // apply
		}, func(t *testing.T, c *config.Config, out string) {
			for _, want := range []string{
				"== Diese Box (Schritt 2 von 16) ==", "! \"Büro\": nur Kleinbuchstaben",
				"! 10.0.1.1 liegt nicht im Subnetz 10.0.0.0/24 dieser Box.",
				"! Diese PIN ist zu leicht zu erraten", "Dieselbe PIN noch einmal:",
				"Nebenstellen:     5 (200-204)", "Amtsleitung:      bri-ptmp MSN 4930111, 4930112",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if c.Node.Name != "buero" || c.Node.Network.Address != "10.0.1.21/24" || c.Console.Language != "de" || c.Console.TimeZone != "Europe/Berlin" {
				t.Errorf("config %+v %+v %+v", c.Node, c.Node.Network, c.Console)
			}
			if len(c.Extensions) != 5 || c.Console.Trunk.Type != config.TrunkBRIPTMP || !config.CheckPIN(c.Console.AdminPIN, "271828") {
				t.Errorf("extensions %d trunk %+v", len(c.Extensions), c.Console.Trunk)
			}
		}},
		{"box B with DHCP refused and a pairing code typo", []string{
			"", "3", "", "eth1", "10.0.0.22/24", "10.0.0.99", "10.0.0.99", // unreachable gateway, kept
			"", "", "10.0.0.21", "10.0.0.22", "10.0.0.10", "", "",
			typo(testCode), testCode,
			"480613", "480613", "", "-", // back from ntp to the time zone
			"UTC", "", "100", "", "", "", "yes",
		}, func(t *testing.T, c *config.Config, out string) {
			for _, want := range []string{"Warning: the gateway 10.0.0.99 did not answer.", "Type the same again",
				"! 10.0.0.22 is a box's own address", "! pairing code: it has a typo"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			cl := c.Cluster
			if cl == nil || cl.PairingKey != testCode || cl.Peer != "a" || cl.LANInterface != "eth1" || cl.Gateway != "10.0.0.99" || cl.Crossover.Local != "10.99.0.2" {
				t.Errorf("cluster %+v", cl)
			}
			if c.Console.TimeZone != "UTC" || c.Console.Trunk != nil {
				t.Errorf("console %+v", c.Console)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *config.Config
			o := testOptions()
			o.Apply = func(_ context.Context, r Result) (string, error) {
				c, err := config.Parse("applied", r.YAML)
				if err != nil {
					return "", err
				}
				got = c
				return "applied", c.Validate()
			}
			var out strings.Builder
			err := RunAccessible(context.Background(), NewWizard(o), strings.NewReader(strings.Join(tc.script, "\n")+"\n"), &out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if got == nil {
				t.Fatalf("nothing applied:\n%s", out.String())
			}
			tc.check(t, got, out.String())
			if t.Failed() {
				t.Log(out.String())
			}
		})
	}
}

func TestRunAccessibleEOF(t *testing.T) {
	o := testOptions()
	o.Apply = func(context.Context, Result) (string, error) { t.Error("applied"); return "", nil }
	var out strings.Builder
	err := RunAccessible(context.Background(), NewWizard(o), strings.NewReader("\n\npbx\n"), &out)
	if !errors.Is(err, ErrAborted) {
		t.Errorf("err = %v, want ErrAborted", err)
	}
}
