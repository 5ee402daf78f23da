package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/replication"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func offerOf(id, version string, data []byte) replication.Offer {
	sum := sha256.Sum256(data)
	return replication.Offer{ID: id, Version: version, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

func TestFollower(t *testing.T) {
	data := []byte("a signed bundle, in a test")
	good := offerOf("r1", "2.0", data)
	tests := []struct {
		name     string
		fw       string
		failed   string
		standby  bool
		offer    replication.Offer
		send     []byte // what the active streams
		applyErr error

		wantFetch   bool
		wantVerdict string // "" : taken
		wantApplied bool
	}{
		{name: "taken", fw: "1.0", standby: true, offer: good, send: data, wantFetch: true, wantApplied: true},
		{name: "already runs it: not even fetched", fw: "2.0", standby: true, offer: good, send: data},
		{name: "failed its trial here before", fw: "1.0", failed: "2.0", standby: true, offer: good, send: data, wantFetch: true, wantVerdict: "already failed"},
		{name: "altered on the way", fw: "1.0", standby: true, offer: good, send: []byte("a signed bundle, in a tesT"), wantFetch: true, wantVerdict: "sha256"},
		{name: "short", fw: "1.0", standby: true, offer: good, send: data[:4], wantFetch: true, wantVerdict: "received 4 bytes"},
		{name: "the slot write fails", fw: "1.0", standby: true, offer: good, send: data, applyErr: errors.New("bad signature"),
			wantFetch: true, wantVerdict: "bad signature"},
		{name: "not the standby", fw: "1.0", standby: false, offer: good, send: data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			box := &fakeBox{fw: tt.fw, failed: tt.failed, applyErr: tt.applyErr}
			var mu sync.Mutex
			fetches, verdict := 0, ""
			f := NewFollower(context.Background(), FollowerConfig{Box: box, DataDir: dir, Logger: quiet(),
				Standby: func() bool { return tt.standby },
				Fetch: func(_ context.Context, o replication.Offer, consume func(io.Reader) error) error {
					mu.Lock()
					fetches++
					mu.Unlock()
					err := consume(strings.NewReader(string(tt.send)))
					if err != nil {
						mu.Lock()
						verdict = err.Error()
						mu.Unlock()
					}
					return err
				}})
			f.Offered(tt.offer)
			f.Wait()
			f.Offered(tt.offer) // the next heartbeat's: the same offer is taken once
			f.Wait()
			if (fetches > 0) != tt.wantFetch || fetches > 1 {
				t.Errorf("%d fetches, want fetched: %v, once", fetches, tt.wantFetch)
			}
			if tt.wantVerdict == "" && verdict != "" || !strings.Contains(verdict, tt.wantVerdict) {
				t.Errorf("verdict %q, want one naming %q", verdict, tt.wantVerdict)
			}
			applied, reboots := box.counts()
			if tt.wantApplied != (applied == 1) || tt.wantApplied != (reboots == 1) {
				t.Errorf("applied %d, rebooted %d; want applied and rebooted: %v", applied, reboots, tt.wantApplied)
			}
			if tt.wantApplied && box.applied[0] != string(data) {
				t.Errorf("applied %q, want the bundle", box.applied[0])
			}
			if _, err := os.Stat(filepath.Join(dir, BundleFile)); !os.IsNotExist(err) {
				t.Errorf("the fetched bundle was left in the data folder (%v)", err)
			}
		})
	}
}

// A fetch that broke off (the active handed over mid-transfer) is tried
// again when the offer comes again, after a pause; a taken one is not.
func TestFollowerRetriesABrokenFetch(t *testing.T) {
	data := []byte("bundle")
	o := offerOf("r", "2.0", data)
	box := &fakeBox{fw: "1.0"}
	fetches := 0
	f := NewFollower(context.Background(), FollowerConfig{Box: box, DataDir: t.TempDir(), Logger: quiet(), RetryFetch: time.Millisecond,
		Fetch: func(_ context.Context, _ replication.Offer, consume func(io.Reader) error) error {
			fetches++
			if fetches == 1 {
				return errors.New("reading snapshot: unexpected EOF")
			}
			return consume(strings.NewReader(string(data)))
		}})
	f.Offered(o)
	f.Wait()
	waitfor.Cond(t, 20*time.Second, "the offer fetched again", func() bool {
		f.Offered(o)
		f.Wait()
		return fetches == 2
	})
	f.Offered(o)
	f.Wait()
	if applied, reboots := box.counts(); fetches != 2 || applied != 1 || reboots != 1 {
		t.Errorf("%d fetches, %d applied, %d reboots; want 2, 1, 1", fetches, applied, reboots)
	}
}
