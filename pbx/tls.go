package pbx

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// TLSStatus is the certificate the tls listeners present, for `twinpbx
// status` (an administrator pins the fingerprint on the phones).
type TLSStatus struct {
	Fingerprint string   `json:"fingerprint"`
	SelfSigned  bool     `json:"self_signed"`
	Names       []string `json:"names"`
	NotAfter    string   `json:"not_after"`
}

// tlsSetup is the TLS side of the PBX: the certificate of its listeners
// and the checks of the servers it connects to.
type tlsSetup struct {
	id    *tlscert.Identity // nil: no tls listener and no tls trunk
	peers *tlscert.Peers
}

// newTLS loads or derives the box's certificate when the config has a tls
// listener or a tls trunk. seed is the box's digest nonce key (see
// tlscert.Derive): the same on both boxes of a twin pair.
func newTLS(cfg *config.Config, seed []byte, log *slog.Logger) (*tlsSetup, error) {
	s := &tlsSetup{peers: tlscert.NewPeers(log.With("component", "tls"))}
	if !cfg.HasTLS() && !tlsTrunks(cfg) {
		return s, nil
	}
	var err error
	if t := cfg.SIP.TLS; t != nil && t.Cert != "" {
		s.id, err = tlscert.Load(t.Cert, t.Key)
	} else {
		s.id, err = tlscert.Derive(seed, cfg.CertNames())
	}
	if err != nil {
		return nil, fmt.Errorf("pbx: sip.tls: %w", err)
	}
	s.peers.SetIdentity(s.id)
	lines, _ := cfg.TrunksAndRoutes()
	for _, l := range lines {
		if l.TLSInsecure {
			log.Warn("tls_insecure: the certificates of TLS servers are NOT checked; anyone on the path can read and change calls over TLS", "trunk", l.Name)
		}
	}
	if cfg.HasTLS() {
		log.Info("SIP over TLS: the listeners present this certificate", "sha256", s.id.Fingerprint,
			"self_signed", s.id.SelfSigned, "names", strings.Join(s.id.Names, ","))
	}
	return s, nil
}

func tlsTrunks(cfg *config.Config) bool {
	lines, _ := cfg.TrunksAndRoutes()
	for _, l := range lines {
		if strings.EqualFold(l.Transport, "tls") {
			return true
		}
	}
	return false
}

// tlsChanged reports whether the listeners' certificate of new differs
// from old's: other files, or other names in a derived one.
func tlsChanged(old, new *config.Config) bool {
	if !new.HasTLS() && !tlsTrunks(new) {
		return false
	}
	return !reflect.DeepEqual(old.SIP.TLS, new.SIP.TLS) || !slices.Equal(old.CertNames(), new.CertNames())
}

// clientConfig is the TLS configuration of the SIP stack's outgoing
// connections.
func (s *tlsSetup) clientConfig() *tls.Config { return s.peers.ClientConfig() }

// serverConfig is the TLS configuration of a tls listener.
func (s *tlsSetup) serverConfig() *tls.Config { return tlscert.ServerConfig(s.id) }

// status reports the certificate; nil without one.
func (s *tlsSetup) status() *TLSStatus {
	if s == nil || s.id == nil {
		return nil
	}
	return &TLSStatus{
		Fingerprint: s.id.Fingerprint, SelfSigned: s.id.SelfSigned,
		Names: s.id.Names, NotAfter: s.id.NotAfter.UTC().Format("2006-01-02"),
	}
}

// resolverTransports are the transports the trunks' resolver may choose:
// TLS (SIPS+D2T, _sips._tcp) once the box has a certificate.
func (s *tlsSetup) resolverTransports() []string {
	if s.id == nil {
		return nil // the resolver's default: udp, tcp
	}
	return []string{resolve.UDP, resolve.TCP, resolve.TLS}
}

// tlsHandshakeTimeout bounds the TLS handshake of a new connection to a
// tls listener.
const tlsHandshakeTimeout = 10 * time.Second

// listenTLS opens a tls listener. Each connection's handshake runs in its
// own goroutine (the SIP stack's reader), bounded by tlsHandshakeTimeout:
// a client that speaks plain text, garbage or nothing holds only its own
// connection, and not for long.
func (s *tlsSetup) listenTLS(addr netip.AddrPort) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listening on tls:%s: %w", addr, err)
	}
	return &tlsListener{Listener: ln, conf: s.serverConfig()}, nil
}

type tlsListener struct {
	net.Listener
	conf *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, l.conf)}, nil
}

// handshakeConn completes the TLS handshake, within tlsHandshakeTimeout,
// before its first read.
type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if c.err = c.Conn.Handshake(); c.err == nil {
			c.err = c.Conn.SetDeadline(time.Time{})
		}
	})
	if c.err != nil {
		return 0, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), c.err)
	}
	return c.Conn.Read(b)
}
