package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Rolling updates of a pair (firmware/rollout) ride on this link, so the
// bundle travels only between boxes that hold the pairing key:
//
//   - the hello and the start frame carry each box's running firmware
//     version (Firmware; unknown JSON fields are ignored, so a box of the
//     previous version pairs with one of the next);
//   - the active's heartbeat frames carry the Offer of a bundle while a
//     roll wants the standby updated;
//   - the standby fetches the offered bundle on a connection of its own
//     to the same listener (TLS from the pairing key as for replication),
//     whose first frame is a fetch instead of a hello; the active streams
//     the bundle in chunk frames closed by an end frame, and the standby
//     answers with one done frame saying whether it took the bundle.
const (
	msgFetch     byte = 10 // fetch (JSON): standby → active, first frame
	msgFetchDone byte = 11 // fetchDone (JSON): standby → active, last frame
)

// Offer is an update bundle the active offers its standby.
type Offer struct {
	// ID names this offer: a standby fetches each ID at most once.
	ID      string `json:"id"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// fetch is the standby's first frame on a fetch connection.
type fetch struct {
	Proto int    `json:"proto"`
	Node  string `json:"node"`
	ID    string `json:"id"`
}

// fetchDone is the standby's verdict on the bundle it received.
type fetchDone struct {
	Err string `json:"err,omitempty"`
}

// FetchStatus is what the active knows of the standby's last fetch.
type FetchStatus struct {
	ID string
	// Done: the standby answered (Err empty: it took the bundle).
	Done bool
	Err  string
	At   time.Time
}

// MaxBundle bounds the size of an offered bundle.
const MaxBundle = 256 << 20

// FetchResultTimeout is how long the active waits for the standby's
// verdict once the bundle is sent (the standby writes and checks a slot).
const FetchResultTimeout = 3 * time.Minute

// SetFirmware sets the firmware version the active names in its start
// frames (SenderConfig.Firmware); call it before Serve.
func (s *Sender) SetFirmware(v string) { s.cfg.Firmware = v }

// SetOffer makes the active offer o to its standby in every heartbeat;
// open gives the bundle's bytes (o.Size of them) for each fetch. nil
// withdraws the offer.
func (s *Sender) SetOffer(o *Offer, open func() (io.ReadCloser, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o == nil {
		s.offer, s.openOffer = nil, nil
		return
	}
	c := *o
	s.offer, s.openOffer = &c, open
	s.fetch = FetchStatus{}
}

// Fetched reports the standby's last fetch of the current offer.
func (s *Sender) Fetched() FetchStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetch
}

func (s *Sender) currentOffer() (*Offer, func() (io.ReadCloser, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offer, s.openOffer
}

func (s *Sender) beat(st interface{ Seq() uint64 }) heartbeat {
	o, _ := s.currentOffer()
	return heartbeat{Seq: st.Seq(), Time: time.Now(), Offer: o}
}

// serveFetch answers a fetch connection: the offered bundle, then the
// standby's verdict.
func (s *Sender) serveFetch(conn net.Conn, payload []byte) error {
	var f fetch
	if err := json.Unmarshal(payload, &f); err != nil {
		return fmt.Errorf("decoding fetch: %w", err)
	}
	refuse := func(err error) error {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		_ = writeFrame(conn, msgError, []byte(err.Error()))
		return err
	}
	if err := s.checkHello(hello{Proto: f.Proto, Node: f.Node}); err != nil {
		return refuse(err)
	}
	o, open := s.currentOffer()
	if o == nil || o.ID != f.ID {
		return refuse(fmt.Errorf("no bundle %q on offer", f.ID))
	}
	rc, err := open()
	if err != nil {
		return refuse(fmt.Errorf("opening the offered bundle: %w", err))
	}
	defer rc.Close()
	s.log.Info("sending the offered bundle to the standby", "peer", f.Node, "version", o.Version, "bytes", o.Size)
	w := deadlineWriter{conn: conn, d: s.cfg.IdleTimeout}
	n, err := io.Copy(snapshotWriter{w}, io.LimitReader(rc, o.Size))
	if err == nil && n != o.Size {
		err = fmt.Errorf("the bundle has %d bytes, offered %d", n, o.Size)
	}
	if err != nil {
		return refuse(fmt.Errorf("sending the bundle: %w", err))
	}
	if err := writeFrame(w, msgSnapEnd, nil); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(FetchResultTimeout))
	typ, p, err := readFrame(conn)
	if err != nil {
		return fmt.Errorf("reading the standby's verdict on the bundle: %w", err)
	}
	var d fetchDone
	if typ != msgFetchDone || json.Unmarshal(p, &d) != nil {
		return fmt.Errorf("reading the standby's verdict on the bundle: frame type %d", typ)
	}
	s.mu.Lock()
	if s.offer != nil && s.offer.ID == f.ID {
		s.fetch = FetchStatus{ID: f.ID, Done: true, Err: d.Err, At: time.Now()}
	}
	s.mu.Unlock()
	if d.Err != "" {
		s.log.Warn("the standby refused the offered bundle", "peer", f.Node, "version", o.Version, "err", d.Err)
	} else {
		s.log.Info("the standby took the offered bundle", "peer", f.Node, "version", o.Version)
	}
	return nil
}

// FetchConfig is how a standby reaches the active for a fetch: as its
// Receiver does.
type FetchConfig struct {
	Node string
	Dial func(ctx context.Context) (net.Conn, error)
	// TLS as ReceiverConfig.TLS (nil: plain connections, for tests).
	TLS *tls.Config
	// Timeout bounds the handshake and each read (0: DefaultIdleTimeout).
	Timeout time.Duration
}

// Fetch asks the active for the offered bundle o and hands its bytes to
// consume, which must read them to the end and returns whether the
// bundle was taken; its verdict is sent to the active. Fetch returns
// consume's error, or why the transfer failed.
func Fetch(ctx context.Context, c FetchConfig, o Offer, consume func(io.Reader) error) error {
	if o.Size <= 0 || o.Size > MaxBundle {
		return fmt.Errorf("fetching bundle %s: offered size %d out of range", o.Version, o.Size)
	}
	timeout := orDefault(c.Timeout, DefaultIdleTimeout)
	conn, err := c.Dial(ctx)
	if err != nil {
		return fmt.Errorf("fetching bundle %s: dialling the active: %w", o.Version, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if c.TLS != nil {
		tc, err := handshake(ctx, tls.Client(conn, c.TLS), timeout)
		if err != nil {
			return fmt.Errorf("fetching bundle %s: %w", o.Version, err)
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := writeJSON(conn, msgFetch, fetch{Proto: ProtocolVersion, Node: c.Node, ID: o.ID}); err != nil {
		return fmt.Errorf("fetching bundle %s: %w", o.Version, err)
	}
	sr := &snapshotReader{r: conn, onFrame: func() { _ = conn.SetDeadline(time.Now().Add(timeout)) }}
	lr := &io.LimitedReader{R: sr, N: o.Size}
	cerr := consume(lr)
	if cerr == nil && lr.N != 0 {
		cerr = fmt.Errorf("the bundle ended after %d of %d bytes", o.Size-lr.N, o.Size)
	}
	// The stream must end where the offer said.
	extra, derr := io.Copy(io.Discard, sr)
	switch {
	case cerr != nil:
	case derr != nil:
		cerr = fmt.Errorf("receiving the bundle: %w", derr)
	case extra > 0:
		cerr = errors.New("the active sent more than the offered size")
	}
	verdict := fetchDone{}
	if cerr != nil {
		verdict.Err = cerr.Error()
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := writeJSON(conn, msgFetchDone, verdict); err != nil && cerr == nil {
		return fmt.Errorf("fetching bundle %s: telling the active: %w", o.Version, err)
	}
	if cerr != nil {
		return fmt.Errorf("fetching bundle %s: %w", o.Version, cerr)
	}
	return nil
}
