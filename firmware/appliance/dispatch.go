package appliance

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// dispatchConfig turns a validated config's dispatcher section into the
// dispatcher's settings. seed derives the self-signed certificate of tls
// listeners when sip.tls names none: the box's nonce key (nil on a
// dispatcher pair, whose boxes derive it from the pairing key, so both
// present the same certificate).
func dispatchConfig(cfg *config.Config, seed []byte) (dispatch.Config, error) {
	d := cfg.Dispatcher
	alg, err := config.DispatcherAlgorithm(d.Algorithm)
	if err != nil {
		return dispatch.Config{}, err
	}
	out := dispatch.Config{
		Algorithm:     dispatch.Algorithm(alg),
		Advertise:     cfg.SIP.Advertise,
		ProbeInterval: d.ProbeInterval.D(),
		DownAfter:     d.DownAfter,
		UpAfter:       d.UpAfter,
		TxTimeout:     d.TxTimeout.D(),
		Attempts:      d.Attempts,
		// Zero: the dispatcher's defaults.
		MaxConns:          d.TCPMaxConnections,
		MaxConnsPerSource: d.TCPMaxPerSource,
		IdleTimeout:       d.TCPIdleTimeout.D(),
		BackendConns:      d.BackendConnections,
	}
	if d.TLSCA != "" {
		if out.BackendCA, err = tlscert.LoadCA(d.TLSCA); err != nil {
			return dispatch.Config{}, fmt.Errorf("dispatcher.tls_ca: %w", err)
		}
	}
	names := false
	for _, b := range d.Backends {
		ap, name, err := b.Target()
		if err != nil {
			return dispatch.Config{}, err
		}
		names = names || name != ""
		be := dispatch.Backend{Addr: ap, Name: name, Weight: b.Weight}
		if tr := b.Transport(); tr != "udp" {
			be.Transport = tr // tcp or tls; empty is udp
		}
		out.Backends = append(out.Backends, be)
	}
	// Backends by name ask the servers of node.network.dns; without
	// them the dispatcher asks those of /etc/resolv.conf.
	if n := cfg.Node.Network; names && n != nil && len(n.DNS) > 0 {
		res, err := resolve.New(resolve.Config{Servers: n.DNS, Transports: []string{resolve.UDP, resolve.TCP, resolve.TLS}})
		if err != nil {
			return dispatch.Config{}, fmt.Errorf("the dispatcher's DNS resolver: %w", err)
		}
		out.Resolver = res
	}
	var tlsConf *tls.Config
	for _, e := range cfg.SIP.Listen {
		l, err := config.ParseListen(e)
		if err != nil {
			return dispatch.Config{}, err
		}
		ap, err := netip.ParseAddrPort(l.Addr())
		if err != nil {
			return dispatch.Config{}, fmt.Errorf("dispatcher listener %s: %w", e, err)
		}
		switch l.Transport {
		case "udp":
			out.Listen = append(out.Listen, ap)
		case "tcp":
			out.StreamListen = append(out.StreamListen, dispatch.StreamListener{Addr: ap})
		case "tls":
			if tlsConf == nil {
				if tlsConf, err = dispatchTLS(cfg, seed); err != nil {
					return dispatch.Config{}, err
				}
			}
			out.StreamListen = append(out.StreamListen, dispatch.StreamListener{Addr: ap, TLS: tlsConf})
		}
	}
	return out, nil
}

// dispatchTLS is the server side of the dispatcher's tls listeners: the
// certificate of sip.tls, else one derived from seed (or, on a pair, from
// the pairing key) for the box's names and addresses.
func dispatchTLS(cfg *config.Config, seed []byte) (*tls.Config, error) {
	var id *tlscert.Identity
	var err error
	if t := cfg.SIP.TLS; t != nil && t.Cert != "" {
		id, err = tlscert.Load(t.Cert, t.Key)
	} else {
		if c := cfg.Cluster; c != nil {
			if seed, err = twin.NonceKey(c.PairingKey); err != nil {
				return nil, fmt.Errorf("the dispatcher's TLS certificate: %w", err)
			}
		}
		id, err = tlscert.Derive(seed, cfg.CertNames())
	}
	if err != nil {
		return nil, fmt.Errorf("the dispatcher's TLS certificate (sip.tls): %w", err)
	}
	return tlscert.ServerConfig(id), nil
}

// listenerName is a listener address as the dispatcher's Run reports it,
// with its transport: "udp:…", "tcp:…" or "tls:…".
func listenerName(addr string) string {
	if strings.HasPrefix(addr, "tcp:") || strings.HasPrefix(addr, "tls:") {
		return addr
	}
	return "udp:" + addr
}

// runDispatcher runs the box as a dispatcher (docs/DISPATCHER.md) with the
// control socket, until ctx ends.
func runDispatcher(ctx context.Context, o Options, st *store.Store, cfg *config.Config) error {
	key, err := nonceKey(o.DataDir)
	if err != nil {
		return err
	}
	dc, err := dispatchConfig(cfg, key)
	if err != nil {
		return fmt.Errorf("starting the dispatcher: %w", err)
	}
	dc.Logger = o.Logger.With("component", "dispatcher")
	d, err := dispatch.New(dc)
	if err != nil {
		return err
	}
	a := &dispatching{configured: configured{st: st, cfg: cfg}, d: d}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ctlErr := make(chan error, 1)
	wg.Go(func() { ctlErr <- control.Serve(ctx, o.DataDir, a, o.Logger) })
	err = d.Run(ctx, func(addrs []string) {
		for _, ad := range addrs {
			fmt.Fprintf(o.Out, "SIP dispatcher listening on %s\n", listenerName(ad))
		}
		o.Logger.Info("ready", "node", cfg.Node.Name, "role", "dispatcher", "config_version", cfg.Version, "data", o.DataDir)
	})
	cancel()
	wg.Wait()
	if cerr := <-ctlErr; cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// dispatching implements control.Appliance for a dispatcher box. An
// imported config is stored and applies at the next restart.
type dispatching struct {
	configured
	d *dispatch.Dispatcher
}

var _ control.Appliance = (*dispatching)(nil)

func (a *dispatching) Status() any {
	a.mu.Lock()
	ver := a.cfg.Version
	a.mu.Unlock()
	return struct {
		Role          string          `json:"role"`
		ConfigVersion uint64          `json:"config_version"`
		Dispatcher    dispatch.Status `json:"dispatcher"`
	}{"dispatcher", ver, a.d.Status()}
}

// ImportConfig stores a new version; any change needs a restart (a
// dispatcher makes no CDRs: ExportCDRs gives what the store holds).
func (a *dispatching) ImportConfig(text []byte) (uint64, bool, error) {
	cfg, err := boxconfig.Parse("imported config", text)
	if err != nil {
		return 0, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, err = boxconfig.Save(a.st, cfg)
	if err != nil {
		return 0, false, err
	}
	restart := !cfg.Equal(a.cfg)
	a.cfg = cfg
	return cfg.Version, restart, nil
}
