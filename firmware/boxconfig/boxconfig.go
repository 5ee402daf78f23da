// Package boxconfig keeps a box's config in its data folder: the
// versions in the store, and a twin's own box file. It is what init (PID 1
// of the image) and the offline commands need of the config, without the
// PBX, the cluster or the console linked in; the appliance stores its
// configs through the same functions, so the logic lives once.
package boxconfig

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// FileName is the file in the data folder that keeps a twin's own config
// (its node name and cluster section, which differ between the twins and
// must not come from the replicated store). It is written whenever
// `twinpbx run --config` is given a config with a cluster section.
const FileName = "box.yaml"

// Parse reads text as a config named name (for its error messages) and
// checks it.
func Parse(name string, text []byte) (*config.Config, error) {
	cfg, err := config.Parse(name, text)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Import checks text and stores it as the next version in a store that
// no appliance is running on, unless it equals the newest stored one. It
// returns the version that holds it. A config that does not parse or
// validate is not stored.
func Import(st *store.Store, text []byte, name string) (uint64, error) {
	cfg, err := Parse(name, text)
	if err != nil {
		return 0, err
	}
	cfg, err = Save(st, cfg)
	if err != nil {
		return 0, err
	}
	return cfg.Version, nil
}

// Export returns the newest stored config as it was stored.
func Export(st *store.Store) ([]byte, error) {
	_, text, err := st.LatestConfig()
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("no config stored yet: run `twinpbx run` once, or `twinpbx config import FILE`")
	}
	return text, err
}

// Save stores cfg as the next version unless it equals the newest stored
// one (its Version ignored); it returns a copy of cfg with its version
// set. cfg itself is not changed.
func Save(st *store.Store, cfg *config.Config) (*config.Config, error) {
	c := *cfg
	c.Version = 0
	text, err := config.Marshal(&c)
	if err != nil {
		return nil, err
	}
	ver, old, err := st.LatestConfig()
	switch {
	case err == nil:
		if oc, perr := config.Parse("stored", old); perr == nil {
			oc.Version = 0
			if ot, merr := config.Marshal(oc); merr == nil && bytes.Equal(ot, text) {
				c.Version = ver
				return &c, nil
			}
		}
	case errors.Is(err, store.ErrNotFound):
		ver = 0
	default:
		return nil, fmt.Errorf("reading the stored config: %w", err)
	}
	c.Version = ver + 1
	if text, err = config.Marshal(&c); err != nil {
		return nil, err
	}
	if err := st.SaveConfig(text, c.Version); err != nil {
		return nil, fmt.Errorf("storing config version %d: %w", c.Version, err)
	}
	return &c, nil
}
