package tui

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mdlayher/arp"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// ExtensionsCSV is the file in the data folder the wizard writes the
// extensions' secrets to when asked.
const ExtensionsCSV = "extensions.csv"

// ApplyToDataDir returns the Apply of a wizard that stores its config in
// the data folder dir the way `twinpbx config import` does: through the
// running appliance's control socket, or into the store when none runs.
// A twin's config is also kept as the box's own file (boxconfig.FileName),
// which is where a twin reads its node name and cluster section at start.
func ApplyToDataDir(dir string) func(context.Context, Result) (string, error) {
	return func(_ context.Context, r Result) (string, error) {
		lang := Lang(r.Config.Console.Language)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("creating the data folder: %w", err)
		}
		var msgs []string
		if r.ExportCSV {
			p, err := WriteExtensionsCSV(dir, r.Config.Extensions)
			if err != nil {
				return "", err
			}
			msgs = append(msgs, lang.T("csv.saved", p))
		}
		if r.Twin {
			if err := writeFileAtomic(filepath.Join(dir, boxconfig.FileName), r.YAML); err != nil {
				return "", err
			}
		}
		text, err := importConfig(dir, r.YAML)
		if err != nil {
			return "", err
		}
		msgs = append([]string{lang.T("applied"), text}, msgs...)
		if r.BoxA {
			msgs = append(msgs, lang.T("next.b"))
		} else {
			msgs = append(msgs, lang.T("next.run"))
		}
		out := ""
		for _, m := range msgs {
			out += m + "\n"
		}
		return out, nil
	}
}

// importConfig is `twinpbx config import` on text.
func importConfig(dir string, text []byte) (string, error) {
	c, err := control.Dial(dir)
	if err == nil {
		r, err := c.ImportConfig(text)
		if err != nil {
			return "", fmt.Errorf("importing the config into the running box: %w", err)
		}
		s := fmt.Sprintf("config version %d applied", r.Version)
		if r.Restart {
			s += "; listeners or RTP ports changed: restart twinpbx for them to apply"
		}
		return s, nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return "", fmt.Errorf("reaching the running box: %w", err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return "", fmt.Errorf("opening the store: %w", err)
	}
	defer st.Close()
	v, err := boxconfig.Import(st, text, "setup")
	if err != nil {
		return "", fmt.Errorf("storing the config: %w", err)
	}
	return fmt.Sprintf("config version %d stored; it applies when twinpbx starts", v), nil
}

// WriteExtensionsCSV writes number, name and secret of each extension to
// ExtensionsCSV in dir (readable by the owner only) and returns its path.
func WriteExtensionsCSV(dir string, exts []config.Extension) (string, error) {
	p := filepath.Join(dir, ExtensionsCSV)
	f, err := os.CreateTemp(dir, ExtensionsCSV+".*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", ExtensionsCSV, err)
	}
	defer os.Remove(f.Name())
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"number", "name", "secret"})
	for _, e := range exts {
		_ = cw.Write([]string{e.Number, e.Name, e.Secret})
	}
	cw.Flush()
	if err := errors.Join(cw.Error(), f.Close()); err != nil {
		return "", fmt.Errorf("writing %s: %w", ExtensionsCSV, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return "", fmt.Errorf("writing %s: %w", ExtensionsCSV, err)
	}
	return p, nil
}

func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("installing %s: %w", p, err)
	}
	return nil
}

// GatewayAnswers reports whether a answers: an ARP request on the
// interface whose subnet holds it, or, when no interface is in that subnet
// yet (the box's address is not set up), a TCP connection attempt that is
// accepted or refused. It gives up at ctx's deadline.
func GatewayAnswers(ctx context.Context, a netip.Addr) bool {
	if ifi := interfaceFor(a); ifi != nil && a.Is4() {
		if c, err := arp.Dial(ifi); err == nil {
			defer c.Close()
			deadline := time.Now().Add(time.Second)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			if c.SetDeadline(deadline) == nil {
				if _, err := c.Resolve(a); err == nil {
					return true
				}
			}
		}
	}
	var d net.Dialer
	for _, port := range []string{"53", "80"} {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			c.Close()
			return true
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return true
		}
	}
	return false
}

// interfaceFor is the interface with an address in a's subnet.
func interfaceFor(a netip.Addr) *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Masked().Contains(a) && p.Addr() != a {
					return &ifs[i]
				}
			}
		}
	}
	return nil
}
