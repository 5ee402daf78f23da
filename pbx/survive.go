package pbx

import (
	"context"
	"fmt"

	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/media"
)

// Calls that survive a failover: the B2BUA saves every answered call in
// the store's dialog bucket, which replication copies to the standby in
// order; the box that takes over restores them before it serves.

// DialogStore is the part of the store that keeps calls in progress;
// *store.Store implements it. A Store that also implements it gets its
// answered calls saved.
type DialogStore interface {
	PutDialog(id string, state []byte) error
	DeleteDialog(id string) error
	Dialogs() (map[string][]byte, error)
}

// dialogCalls adapts a DialogStore to the B2BUA's CallStore.
type dialogCalls struct{ s DialogStore }

func (d dialogCalls) SaveCall(id string, state []byte) error { return d.s.PutDialog(id, state) }
func (d dialogCalls) DeleteCall(id string) error             { return d.s.DeleteDialog(id) }
func (d dialogCalls) LoadCalls() (map[string][]byte, error)  { return d.s.Dialogs() }

// callStore returns where the B2BUA saves its calls: the store's dialog
// bucket when it has one, else nothing.
func callStore(s Store) b2bua.CallStore {
	if ds, ok := s.(DialogStore); ok {
		return dialogCalls{ds}
	}
	return nil
}

// Restore reopens a saved media session on its ports.
func (a relayAdapter) Restore(st media.SessionState) (b2bua.MediaSession, error) {
	s, err := a.r.Restore(st)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// RestoreCalls carries on the answered calls saved in the store (by the
// twin before it died, or by this box before a restart) and returns how
// many it restored. Call it when this box takes over, after Reload and
// before serving: calls restored earlier would be stale by then.
func (p *PBX) RestoreCalls(ctx context.Context) (int, error) {
	p.vm.TakeOver()
	n, err := p.calls.Restore(ctx)
	if n > 0 {
		p.log.Info("calls restored after a failover", "count", n)
	}
	if err != nil {
		return n, fmt.Errorf("restoring calls: %w", err)
	}
	return n, nil
}

// AbandonCalls forgets every call without a BYE or a CDR and leaves the
// saved records for the twin (mailbox calls end unsaved, as in a
// failover): for a box that stops serving because it
// hands over, so that the twin's RestoreCalls carries the answered calls
// on. Stop serving first. It returns how many answered calls were left.
func (p *PBX) AbandonCalls() int {
	p.vm.Abandon()
	return p.calls.Abandon()
}
