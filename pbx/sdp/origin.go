package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
)

// Origin is the o= line the relay presents to one leg of a call. A
// back-to-back session must keep its origin stable towards each leg and
// raise the version exactly when the description it sends changes
// (RFC 3264 section 8): phones compare the version to tell a re-offer
// that changes something from a refresh.
//
// Its fields are exported so the state can be replicated to the twin and
// the version carries on after a failover. An Origin is not safe for
// concurrent use; the media session guards its own.
type Origin struct {
	Username  string `json:"username"`
	SessionID uint64 `json:"session_id"`
	// Version is the version of the last description sent; 0 before the
	// first one.
	Version uint64 `json:"version"`
	// Digest identifies the last description sent (with its o= line
	// neutralised), to tell whether the next one changed.
	Digest uint64 `json:"digest"`
}

// NewOrigin returns an origin with a random session ID. username is what
// the o= line names ("-" when empty).
func NewOrigin(username string) (Origin, error) {
	if username == "" {
		username = "-"
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Origin{}, fmt.Errorf("sdp: drawing a session ID: %w", err)
	}
	// 62 bits keep the number positive for peers that parse it as a
	// signed 64-bit integer, with room to spare.
	return Origin{Username: username, SessionID: binary.BigEndian.Uint64(b[:]) >> 2}, nil
}

// Apply replaces the o= line of body with this origin, naming addr as the
// originator, and raises the version when anything else in body differs
// from the last description Apply was given.
func (o *Origin) Apply(body []byte, addr netip.Addr) ([]byte, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("sdp: origin address %v is not an IP address", addr)
	}
	sd, err := unmarshal(body)
	if err != nil {
		return nil, err
	}
	if _, err := describe(sd); err != nil {
		return nil, err
	}
	if o.Username == "" {
		o.Username = "-"
	}
	addr = addr.Unmap()
	sd.Origin.Username = o.Username
	sd.Origin.SessionID = o.SessionID
	sd.Origin.SessionVersion = 0
	sd.Origin.NetworkType = "IN"
	sd.Origin.AddressType = addrType(addr)
	sd.Origin.UnicastAddress = addr.String()
	neutral, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sdp: marshalling for the origin digest: %w", err)
	}
	h := fnv.New64a()
	h.Write(neutral)
	digest := h.Sum64()
	if o.Version == 0 || digest != o.Digest {
		o.Version++
		o.Digest = digest
	}
	sd.Origin.SessionVersion = o.Version
	out, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sdp: marshalling with the relay's origin: %w", err)
	}
	return out, nil
}
