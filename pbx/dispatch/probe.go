package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// prober state: one outstanding OPTIONS per backend, numbered.
type probes struct {
	mu          sync.Mutex
	seq         []uint64
	outstanding []bool
	callID      string // prefix of the probes' Call-IDs, new per start
}

func newProbes(n int) *probes {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return &probes{seq: make([]uint64, n), outstanding: make([]bool, n), callID: hex.EncodeToString(rnd[:])}
}

// probeOK tells which final answers to OPTIONS count as alive: anything a
// working SIP stack says (404, 405 and 501 included), but not 408 or a
// 5xx, which a PBX sends when it cannot serve.
func probeOK(status int) bool {
	return status >= 200 && status < 500 && status != 408
}

// probeLoop sends an OPTIONS to every backend every ProbeInterval, over
// UDP from s or over a connection of its pool. A probe still unanswered
// when the next one is due counts as failed.
func (d *Dispatcher) probeLoop(ctx context.Context, s *sock) {
	tick := time.NewTicker(d.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		d.probeRound(s)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (d *Dispatcher) probeRound(s *sock) {
	p := d.probes
	r := d.roster.Load()
	for i, addr := range r.addrs {
		if !r.listed[i] {
			continue
		}
		p.mu.Lock()
		missed := p.outstanding[i]
		p.seq[i]++
		seq := p.seq[i]
		p.outstanding[i] = true
		p.mu.Unlock()
		if missed {
			d.health.probed(i, false)
		}
		ps := s
		if pl := d.pool(i); pl != nil {
			// Over the backend's own transport; with no connection
			// open the probe is lost, and counted so.
			if ps = pl.sock(""); ps == nil {
				continue
			}
		}
		msg := optionsRequest(ps, addr, i, seq, p.callID)
		if _, err := ps.conn.WriteToUDPAddrPort(msg, addr); err != nil {
			d.netLog.Warn("dispatcher could not send a probe", "backend", r.names[i], "err", err)
		}
	}
}

// optionsRequest is the probe of backend i, number seq. Its branch names
// both, so the answer is matched without a transaction.
func optionsRequest(s *sock, to netip.AddrPort, i int, seq uint64, callID string) []byte {
	var b strings.Builder
	target := to.String()
	fmt.Fprintf(&b, "OPTIONS sip:%s SIP/2.0\r\n", target)
	fmt.Fprintf(&b, "Via: %s;branch=%s%d-%d;rport\r\n", s.via, probePrefix, i, seq)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:dispatcher@%s:%d>;tag=%s\r\n", s.host, s.port, callID)
	fmt.Fprintf(&b, "To: <sip:%s>\r\n", target)
	fmt.Fprintf(&b, "Call-ID: dp-%s-%d-%d@%s\r\n", callID, i, seq, s.host)
	fmt.Fprintf(&b, "CSeq: %d OPTIONS\r\n", seq)
	b.WriteString("Accept: application/sdp\r\n")
	b.WriteString("User-Agent: twinpbx-dispatcher\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// probeAnswered takes the answer to a probe. Only an answer from the
// backend's own host counts (from any port of it): the probe's branch is
// easy to guess, and a stranger's answers must not keep a dead backend up.
func (d *Dispatcher) probeAnswered(branch string, status int, from netip.AddrPort) {
	if status < 200 {
		return
	}
	is, seqs, ok := strings.Cut(strings.TrimPrefix(branch, probePrefix), "-")
	i, err1 := strconv.Atoi(is)
	seq, err2 := strconv.ParseUint(seqs, 10, 64)
	r := d.roster.Load()
	if !ok || err1 != nil || err2 != nil || i < 0 || i >= len(r.addrs) {
		return
	}
	// The address it has now: after a DNS change the old one's answers
	// no longer count.
	if from.Addr().Unmap() != r.addrs[i].Addr().Unmap() {
		d.netLog.Warn("dispatcher dropped a probe answer from another host than the backend's", "from", from.String(), "backend", r.addrs[i].String())
		return
	}
	p := d.probes
	p.mu.Lock()
	current := p.seq[i] == seq && p.outstanding[i]
	if current {
		p.outstanding[i] = false
	}
	p.mu.Unlock()
	if current {
		d.health.probed(i, probeOK(status))
	}
}
