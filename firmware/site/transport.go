package site

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/twinpbx/twinpbx/firmware/cluster/pairing"
)

// HKDF labels of the keys derived from the site key. Changing one breaks
// the site with boxes of older firmware.
const (
	gossipLabel = "twinpbx site gossip v1"
	raftLabel   = "twinpbx site raft v1"
	trustLabel  = "twinpbx site forwarded requests v1"
)

// siteKeys are the secrets derived from the site key: memberlist's
// AES-256 key and the TLS identity of the raft links.
type siteKeys struct {
	gossip []byte
	raft   *pairing.Keys
	// trust signs the requests one box forwards to another (trust.go).
	trust []byte
}

func deriveKeys(key string) (siteKeys, error) {
	g, err := hkdf.Key(sha256.New, []byte(key), nil, gossipLabel, 32)
	if err != nil {
		return siteKeys{}, fmt.Errorf("deriving the gossip key: %w", err)
	}
	r, err := hkdf.Key(sha256.New, []byte(key), nil, raftLabel, 32)
	if err != nil {
		return siteKeys{}, fmt.Errorf("deriving the raft key: %w", err)
	}
	// The raft links reuse the twin's key-derived TLS identity, seeded with
	// a key of their own, so a site key that equals some pairing key
	// still gives another certificate.
	rk, err := pairing.Derive(hex.EncodeToString(r))
	if err != nil {
		return siteKeys{}, fmt.Errorf("deriving the raft link's identity: %w", err)
	}
	tk, err := hkdf.Key(sha256.New, []byte(key), nil, trustLabel, 32)
	if err != nil {
		return siteKeys{}, fmt.Errorf("deriving the key of forwarded requests: %w", err)
	}
	return siteKeys{gossip: g, raft: rk, trust: tk}, nil
}

// tlsStream is raft's stream layer over TLS 1.3 with the certificate
// derived from the site key on both ends: a box without the key can
// neither connect nor be connected to.
type tlsStream struct {
	net.Listener
	client *tls.Config
}

func newTLSStream(addr string, k *pairing.Keys) (*tlsStream, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the site's raft links on %s: %w", addr, err)
	}
	return &tlsStream{Listener: tls.NewListener(l, k.TLSConfig(true)), client: k.TLSConfig(false)}, nil
}

// Dial implements raft.StreamLayer.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, pairing.Explain(err))
	}
	return c, nil
}

// logWriter turns the line logs of memberlist and raft ("[WARN] text")
// into slog records at the matching level.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil { // no full line yet: keep it
			rest := line
			w.buf.Reset()
			w.buf.WriteString(rest)
			break
		}
		w.emit(line)
	}
	return len(p), nil
}

func (w *logWriter) emit(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	// The first tag is the level; a later one is part of the message.
	level, at, end := slog.LevelInfo, len(line), 0
	for _, m := range []struct {
		tag   string
		level slog.Level
	}{{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := strings.Index(line, m.tag); i >= 0 && i < at {
			level, at, end = m.level, i, i+len(m.tag)
		}
	}
	w.log.Log(context.Background(), level, strings.TrimSpace(line[end:]))
}
