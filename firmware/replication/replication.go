// Package replication keeps the standby's store a copy of the active's,
// instead of DRBD: the active (Sender) streams the store's ordered change
// log over TLS to the standby (Receiver), which applies it with the same
// sequence numbers. A standby that is too far behind, or whose log differs
// from the active's, gets a snapshot of the whole store and then the
// changes after it. While the standby is connected and in sync, every write
// on the active waits (up to an ack timeout) until the standby has
// committed it, so a registration answered with 200 OK survives a failover;
// a standby that is slow or gone never stops the active's writes.
//
// What happens when the active's own commit fails after the standby got
// the batch (BeforeCommit runs before bbolt commits): the standby is then
// ahead of the active with changes the active does not hold. The active's
// next write reuses those sequence numbers; the Sender sees a batch that
// does not follow what it sent, drops the link and the standby reconnects.
// Its hello names its sequence and a checksum of its newest change; the
// active finds that change differs from (or is beyond) its own log and
// resynchronises the standby as below: the failed write comes back to the
// active by the merge. The Receiver refuses (store.ErrDiverged) a change
// whose number it holds with other content, which leads to the same
// resync.
//
// When the standby connects with a log that diverged from the active's
// (both were active, or the failed commit above), the active first takes
// the standby's store and merges it into its own (Merge; the rules are in
// docs/CLUSTER.md, "Merge rules"), then sends the snapshot.
//
// Wiring: store.Options are fixed when the store is opened, so each box
// creates its Sender first and opens its store with BeforeCommit set to
// the Sender's, whatever its role. With no standby linked, BeforeCommit
// returns at once; Apply and RestoreSnapshot do not call it. The standby
// runs a Receiver on that store; at takeover the manager cancels the
// Receiver's context and starts Serve on the same Sender and store.
package replication

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"
)

// EventKind says what happened on the replication link.
type EventKind int

// Event kinds, for the cluster manager and the alarm list.
const (
	// Connected: the TLS link is up and the hello was accepted.
	Connected EventKind = iota + 1
	// Disconnected: the link went down (Err says why).
	Disconnected
	// SnapshotStarted / SnapshotDone: a whole-store copy is under way /
	// has been restored (Seq is the standby's sequence after it).
	SnapshotStarted
	SnapshotDone
	// InSync: the standby holds everything the active committed.
	InSync
	// OutOfSync: the standby fell behind (on the active: an ack timed out;
	// writes go on without waiting until it has caught up).
	OutOfSync
	// Refused: the twin was refused (TLS identity, protocol version, node
	// name) or refused us (Err says why).
	Refused
	// Merged: on the active, the diverged standby's store was merged into
	// this one (Merge has the report; raise "config conflict" when it says
	// so). Err is set when the merge failed; the link then drops.
	Merged
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case SnapshotStarted:
		return "snapshot started"
	case SnapshotDone:
		return "snapshot done"
	case InSync:
		return "in sync"
	case OutOfSync:
		return "out of sync"
	case Refused:
		return "refused"
	case Merged:
		return "merged"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is one thing that happened on the link.
type Event struct {
	Kind EventKind
	// Peer is the twin's node name, when known.
	Peer string
	// Seq is the local store sequence when it happened.
	Seq uint64
	// Err is the cause of Disconnected, Refused and OutOfSync.
	Err error
	// Merge is the report of a Merged event.
	Merge *MergeReport
	Time  time.Time
}

// Defaults of the Config fields.
const (
	DefaultAckTimeout        = 200 * time.Millisecond
	DefaultHeartbeatInterval = time.Second
	DefaultIdleTimeout       = 10 * time.Second
	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
)

// catchupBatch is how many logged changes one catch-up frame carries.
const catchupBatch = 512

// syncWindow bounds how far a standby streaming live but not in sync may
// trail: a write waits (up to the ack timeout) until it is at most this
// many changes behind.
const syncWindow = 32

// maxQueued bounds the batches queued for the standby by BeforeCommit
// before the link is left to catch up from the log instead.
const maxQueued = 4096

// orDefault returns d when v is not positive.
func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// handshake completes tc's TLS handshake within timeout; both ends of the
// link use it, the standby as client, the active as server.
func handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) (*tls.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", tc.RemoteAddr(), err)
	}
	return tc, nil
}
