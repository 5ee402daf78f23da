package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ProbeConfig shapes a phone probe. Zero values take the defaults.
type ProbeConfig struct {
	// Phone is the phone the probe runs from (default Phone(0)).
	Phone Node
	// Target is where the OPTIONS go (default the bed's VIP, port 5060).
	Target netip.AddrPort
	// Interval between probes (default 20 ms).
	Interval time.Duration
	// Timeout is how long a probe may wait for its answer to count as
	// answered (default 500 ms, a SIP phone's first retransmission).
	Timeout time.Duration
}

// Probe sends a SIP OPTIONS to the VIP every Interval from a phone and
// records which node answered each one, from the "Server: twinpbx/<node>"
// header of the answer. It sends from an unconnected socket, so ICMP
// errors while nobody holds the VIP do not stop it. Methods are safe for
// concurrent use.
type Probe struct {
	bed *Bed
	cfg ProbeConfig

	mu      sync.Mutex
	results []Result
	strays  int
	conn    *net.UDPConn
	cancel  context.CancelFunc
	sender  chan struct{} // closed when the sender stops
	reader  chan struct{} // closed when the reader stops
	stopped bool
}

// Result is what became of one probe.
type Result struct {
	Seq  int
	Sent time.Time
	// Answered is true when an answer from the target arrived within the
	// timeout; Late when one arrived only after it.
	Answered, Late bool
	RTT            time.Duration
	// Node is the node named by the first answer; Nodes lists every
	// distinct node that answered this probe.
	Node  string
	Nodes []string
}

// NewProbe prepares a probe; Start starts it.
func (b *Bed) NewProbe(cfg ProbeConfig) *Probe {
	if cfg.Phone == "" {
		cfg.Phone = Phone(0)
	}
	if !cfg.Target.IsValid() {
		cfg.Target = netip.AddrPortFrom(b.VIP().Addr(), 5060)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	return &Probe{bed: b, cfg: cfg}
}

// Start opens the probe's socket in the phone's namespace and starts
// probing until Stop or the end of ctx.
func (p *Probe) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil || p.stopped {
		return errors.New("starting a probe: already started")
	}
	err := p.bed.InNS(p.bed.NS(p.cfg.Phone), func() error {
		var err error
		p.conn, err = net.ListenUDP("udp", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return fmt.Errorf("opening the probe socket on %s: %w", p.cfg.Phone, err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	callID := "tp-probe-" + hex.EncodeToString(id[:])
	ctx, p.cancel = context.WithCancel(ctx)
	p.sender, p.reader = make(chan struct{}), make(chan struct{})
	go p.send(ctx, callID)
	go p.read(callID)
	return nil
}

func (p *Probe) send(ctx context.Context, callID string) {
	defer close(p.sender)
	local := p.bed.Addr(p.cfg.Phone)
	if p.cfg.Target.Addr().Is6() {
		local = p.bed.Addr6(p.cfg.Phone)
	}
	port := p.conn.LocalAddr().(*net.UDPAddr).Port
	dst := net.UDPAddrFromAddrPort(p.cfg.Target)
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		req := optionsRequest(p.cfg.Target, netip.AddrPortFrom(local, uint16(port)), callID, seq)
		p.mu.Lock()
		p.results = append(p.results, Result{Seq: seq, Sent: time.Now()})
		p.mu.Unlock()
		// While nobody holds the VIP, sends fail (no ARP answer, ICMP
		// errors); the probe counts as unanswered.
		_, _ = p.conn.WriteToUDP(req, dst)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *Probe) read(callID string) {
	defer close(p.reader)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error reported on the socket
		}
		now := time.Now()
		seq, node, ok := parseReply(buf[:n], callID)
		p.mu.Lock()
		switch {
		case !ok || seq < 1 || seq > len(p.results):
		case from.Addr().Unmap() != p.cfg.Target.Addr() || from.Port() != p.cfg.Target.Port():
			// A phone talking to the VIP drops answers from elsewhere.
			p.strays++
		default:
			r := &p.results[seq-1]
			if !contains(r.Nodes, node) {
				r.Nodes = append(r.Nodes, node)
			}
			if r.Node == "" {
				r.Node = node
				r.RTT = now.Sub(r.Sent)
				r.Answered = r.RTT <= p.cfg.Timeout
				r.Late = !r.Answered
			}
		}
		p.mu.Unlock()
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Stop stops sending, waits the timeout for the last answers, closes the
// socket and returns the final report. Calling it again returns the same
// report.
func (p *Probe) Stop() Report {
	p.mu.Lock()
	if p.conn == nil || p.stopped {
		p.stopped = true
		p.mu.Unlock()
		return p.Report()
	}
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	<-p.sender
	// Give the last probes the time an answer has, by definition, unless
	// they are all answered already.
	for deadline := time.Now().Add(p.cfg.Timeout); time.Now().Before(deadline) && p.pending(); {
		time.Sleep(5 * time.Millisecond)
	}
	_ = p.conn.Close()
	<-p.reader
	return p.Report()
}

// pending says whether the last probe is still unanswered.
func (p *Probe) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.results) > 0 && p.results[len(p.results)-1].Node == ""
}

// Report summarizes the probes so far. Before Stop, probes sent within
// the last timeout are still pending and left out.
func (p *Probe) Report() Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	results := p.results
	if !p.stopped {
		cut := time.Now().Add(-p.cfg.Timeout)
		for len(results) > 0 && results[len(results)-1].Sent.After(cut) && !results[len(results)-1].Answered {
			results = results[:len(results)-1]
		}
	}
	rep := summarize(results, p.cfg.Interval)
	rep.Strays = p.strays
	return rep
}

// Results returns a copy of every probe's result so far.
func (p *Probe) Results() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Result, len(p.results))
	for i, r := range p.results {
		r.Nodes = append([]string(nil), r.Nodes...)
		out[i] = r
	}
	return out
}

// Report is what the phone saw.
type Report struct {
	Sent, Answered, Late int
	// LongestOutage is the longest stretch of unanswered probes between
	// answered ones: from the first unanswered probe to the next answered
	// one, to the probe interval's resolution. Unanswered probes before
	// the first answer are not counted (the service was not up yet);
	// unanswered probes at the end are, and set Unrecovered.
	LongestOutage   time.Duration
	LongestOutageAt time.Time
	Unrecovered     bool
	// Runs are the stretches answered by one node, in order; Switches is
	// len(Runs)-1.
	Runs     []Run
	Switches int
	// DoubleAnswered counts probes answered by two different nodes.
	DoubleAnswered int
	// Interleaved is the on-the-wire split-brain check: a node answered
	// again after another had taken over, or one probe got answers from
	// two nodes. (A deliberate failback also sets it.)
	Interleaved bool
	// Strays counts answers from an address other than the target, which
	// a phone would drop.
	Strays int
}

// Run is a stretch of probes answered by one node.
type Run struct {
	Node        string
	First, Last time.Time
	Probes      int
}

// Nodes lists the answering nodes in the order they took over.
func (r Report) Nodes() []string {
	var s []string
	for _, run := range r.Runs {
		s = append(s, run.Node)
	}
	return s
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d probes, %d answered, %d late, longest outage %v", r.Sent, r.Answered, r.Late, r.LongestOutage)
	if r.Unrecovered {
		b.WriteString(" (not recovered)")
	}
	fmt.Fprintf(&b, ", answered by %s", strings.Join(r.Nodes(), " → "))
	if r.Interleaved {
		fmt.Fprintf(&b, ", INTERLEAVED (%d probes answered twice)", r.DoubleAnswered)
	}
	if r.Strays > 0 {
		fmt.Fprintf(&b, ", %d answers not from the target", r.Strays)
	}
	return b.String()
}

// summarize computes a report from results in sending order.
func summarize(results []Result, interval time.Duration) Report {
	rep := Report{Sent: len(results)}
	seen := map[string]bool{}
	gapStart := -1 // index of the first unanswered probe of the current gap
	answeredOnce := false
	for i, r := range results {
		if r.Late {
			rep.Late++
		}
		if len(r.Nodes) > 1 {
			rep.DoubleAnswered++
			rep.Interleaved = true
		}
		if !r.Answered {
			if gapStart < 0 && answeredOnce {
				gapStart = i
			}
			continue
		}
		rep.Answered++
		if gapStart >= 0 {
			if d := r.Sent.Sub(results[gapStart].Sent); d > rep.LongestOutage {
				rep.LongestOutage, rep.LongestOutageAt = d, results[gapStart].Sent
			}
			gapStart = -1
		}
		answeredOnce = true
		if n := len(rep.Runs); n > 0 && rep.Runs[n-1].Node == r.Node {
			rep.Runs[n-1].Last = r.Sent
			rep.Runs[n-1].Probes++
			continue
		}
		if seen[r.Node] {
			rep.Interleaved = true
		}
		seen[r.Node] = true
		rep.Runs = append(rep.Runs, Run{Node: r.Node, First: r.Sent, Last: r.Sent, Probes: 1})
	}
	if len(results) > 0 && (gapStart >= 0 || !answeredOnce) {
		if gapStart < 0 {
			gapStart = 0
		}
		rep.Unrecovered = true
		if d := results[len(results)-1].Sent.Sub(results[gapStart].Sent) + interval; d > rep.LongestOutage {
			rep.LongestOutage, rep.LongestOutageAt = d, results[gapStart].Sent
		}
	}
	if len(rep.Runs) > 0 {
		rep.Switches = len(rep.Runs) - 1
	}
	return rep
}

// optionsRequest is one probe.
func optionsRequest(target, local netip.AddrPort, callID string, seq int) []byte {
	return fmt.Appendf(nil, "OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s.%d;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@%s>;tag=%s\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d OPTIONS\r\n"+
		"User-Agent: twinpbx-testbed-probe\r\n"+
		"Content-Length: 0\r\n\r\n",
		target, local, callID, seq, local.Addr(), callID, target, callID, seq)
}

// parseReply reads an answer to one of the probe's requests: its CSeq
// number and the node named in "Server: twinpbx/<node>" (the whole Server
// value for another server, "?" without one or with an empty one). Any final or provisional
// response counts: the node is alive and holds the VIP.
func parseReply(data []byte, callID string) (seq int, node string, ok bool) {
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return 0, "", false
	}
	res, isRes := msg.(*sip.Response)
	if !isRes {
		return 0, "", false
	}
	cid, cseq := res.CallID(), res.CSeq()
	if cid == nil || cseq == nil || cid.Value() != callID || cseq.MethodName != sip.OPTIONS {
		return 0, "", false
	}
	if h := res.GetHeader("Server"); h != nil {
		node = strings.TrimSpace(h.Value())
		if rest, found := strings.CutPrefix(node, "twinpbx/"); found {
			node, _, _ = strings.Cut(rest, " ")
		}
	}
	if node == "" {
		node = "?"
	}
	return int(cseq.SeqNo), node, true
}
