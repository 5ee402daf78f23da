package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// DataState is what init finds in the data folder before twinpbx starts.
type DataState struct {
	// Stored is true when the store exists: twinpbx runs its stored config.
	Stored bool
	// Twin is true when the box file of a twin pair exists: the node
	// opens the board's watchdog itself.
	Twin bool
}

// InspectData looks at the data folder dir without changing it.
func InspectData(dir string) (DataState, error) {
	var s DataState
	for _, c := range []struct {
		name string
		flag *bool
	}{{store.FileName, &s.Stored}, {boxconfig.FileName, &s.Twin}} {
		_, err := os.Stat(filepath.Join(dir, c.name))
		switch {
		case err == nil:
			*c.flag = true
		case !errors.Is(err, fs.ErrNotExist):
			return DataState{}, fmt.Errorf("inspecting the data folder: %w", err)
		}
	}
	return s, nil
}

// FirstBootConfig is the config of a box whose data folder is empty: the
// starter config (extensions 100-104 with random secrets from rnd, nil:
// crypto/rand), but listening on every address, since phones reach the
// box over the LAN, and advertising addr when it is known. The wizard
// replaces it.
func FirstBootConfig(rnd io.Reader, addr netip.Addr) ([]byte, error) {
	c := config.Starter(rnd)
	c.SIP.Listen = []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"}
	if addr.IsValid() {
		c.SIP.Advertise = addr.String()
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("first-boot config: %w", err)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the first-boot config: %w", err)
	}
	return b, nil
}

// RunArgs are the arguments of `twinpbx run` on the box: cfgPath, when
// set, is a config to import first.
func RunArgs(board, cfgPath string) []string {
	args := []string{"run", "--data", DataDir, "--board", board}
	if cfgPath != "" {
		args = append(args, "--config", cfgPath)
	}
	return args
}

// InitKeepsWatchdog reports whether init must keep the board's watchdog
// device: a standalone box's node does not open it (only a twin's does,
// and only one process can hold it), so init kicks it while twinpbx runs.
func InitKeepsWatchdog(dev string, s DataState) bool {
	return dev != "" && filepath.IsAbs(dev) && !s.Twin
}
