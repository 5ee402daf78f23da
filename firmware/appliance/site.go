package appliance

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/site"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// siteDir is the folder of the site's replicated log in the data folder.
const siteDir = "site"

// startSite joins the site cluster of cfg's site section (docs/SITE.md);
// nil when the box is not part of a site.
func startSite(ctx context.Context, o Options, cfg *config.Config) (*site.Site, error) {
	if cfg.Site == nil {
		return nil, nil
	}
	s, err := site.Start(ctx, site.Options{
		Config: cfg.Site.Effective(cfg.Node.Name),
		Dir:    filepath.Join(o.DataDir, siteDir),
		Logger: o.Logger.With("component", "site"),
		SIP:    site.SIPAddress(cfg.SIP.Listen, cfg.Site.Bind),
	})
	if err != nil {
		return nil, fmt.Errorf("joining the site: %w", err)
	}
	return s, nil
}

// siteStore is the store as the PBX of a site box sees it: every binding
// change is stored first, exactly as on a standalone box, and then told to
// the site; and being a location.Shared, it lets the location service find
// the phones registered on the other boxes.
type siteStore struct {
	*store.Store
	site *site.Site
}

// SaveBinding stores b, then tells the site.
func (s siteStore) SaveBinding(b location.Binding) error {
	if err := s.Store.SaveBinding(b); err != nil {
		return err
	}
	s.site.Published(b)
	return nil
}

// SaveBindings stores bs (in one write when the store can), then tells
// the site. It hides the store's own SaveBindings, which would bypass the
// site.
func (s siteStore) SaveBindings(bs []location.Binding) error {
	if batch, ok := any(s.Store).(interface {
		SaveBindings([]location.Binding) error
	}); ok {
		if err := batch.SaveBindings(bs); err != nil {
			return err
		}
	} else {
		for _, b := range bs {
			if err := s.Store.SaveBinding(b); err != nil {
				return err
			}
		}
	}
	for _, b := range bs {
		s.site.Published(b)
	}
	return nil
}

// DeleteBinding removes the binding, then tells the site.
func (s siteStore) DeleteBinding(aor, contact string) error {
	if err := s.Store.DeleteBinding(aor, contact); err != nil {
		return err
	}
	s.site.Withdrawn(aor, contact)
	return nil
}

// LoadBindings returns the stored bindings and tells the site of them: at
// start, the site learns what this box held before it stopped.
func (s siteStore) LoadBindings() ([]location.Binding, error) {
	bs, err := s.Store.LoadBindings()
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		s.site.Published(b)
	}
	return bs, nil
}

// SharedLookup implements location.Shared.
func (s siteStore) SharedLookup(aor string) []location.Binding { return s.site.SharedLookup(aor) }
