package control

import (
	"errors"
	"strings"
	"testing"
)

type restartingAppliance struct {
	fakeAppliance
	restarts int
	err      error
}

func (r *restartingAppliance) Restart() error { r.restarts++; return r.err }

func TestRestart(t *testing.T) {
	tests := []struct {
		name       string
		app        Appliance
		supervised bool
		want       string // in the answer
		wantErr    string
		selfKills  int // restarts by the process's own SIGTERM
		appCalls   int
	}{
		{name: "supervised worker ends itself", app: &fakeAppliance{}, supervised: true, want: "restarting the PBX", selfKills: 1},
		{name: "no supervisor to start it again", app: &fakeAppliance{}, wantErr: "without its supervisor"},
		{name: "appliance restarts itself", app: &restartingAppliance{}, want: "restarting the PBX", appCalls: 1},
		{name: "appliance restart fails", app: &restartingAppliance{err: errors.New("store busy")}, want: "restart failed: store busy", appCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kills := 0
			old := restarter
			restarter.can = func() bool { return tt.supervised }
			restarter.do = func() error { kills++; return nil }
			t.Cleanup(func() { restarter = old })

			c, err := Dial(serve(t, tt.app))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Restart()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Restart = %q, %v; want error %q", got, err, tt.wantErr)
				}
			} else if err != nil || !strings.Contains(got, tt.want) {
				t.Fatalf("Restart = %q, %v; want %q", got, err, tt.want)
			}
			if kills != tt.selfKills {
				t.Errorf("process ended itself %d times, want %d", kills, tt.selfKills)
			}
			if r, ok := tt.app.(*restartingAppliance); ok && r.restarts != tt.appCalls {
				t.Errorf("appliance restarted %d times, want %d", r.restarts, tt.appCalls)
			}
		})
	}
}
