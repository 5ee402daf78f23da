// Command failover measures how long a phone loses the VIP when the active
// box of a pair breaks, for twinpbx's twin pair and for keepalived (VRRP)
// on the same namespace test bed (internal/testbed), in the same run.
//
// For each tool and each fault (SIGKILL of the active's software, power
// off, LAN carrier cut, silent crossover cut) it runs trials on a fresh
// bed: a phone sends SIP OPTIONS to the VIP every 20 ms, the fault comes
// at a random moment, and the trial records the longest stretch of
// unanswered probes and whether both nodes ever answered (split brain as
// the phone sees it). keepalived's nodes run a tiny UDP responder bound on
// the VIP (ip_nonlocal_bind), which answers the probe as the service would.
//
// It needs root, ip, nft and keepalived; run it through bench/failover/run.sh.
// It is a separate main package, not a test, so `go test ./...` never runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/testbed"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "respond" {
		if err := respond(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "failover respond:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

// options of a run.
type options struct {
	trials    int
	tools     []string
	cases     []string
	binary    string
	out       string
	trialMax  time.Duration
	loadMax   float64
	loadWait  time.Duration
	verbosity slog.Level
}

func run() error {
	var o options
	var tools, cases string
	flag.IntVar(&o.trials, "trials", 10, "trials per tool and fault")
	flag.StringVar(&tools, "tools", strings.Join(toolNames(), ","), "tools to measure")
	flag.StringVar(&cases, "cases", strings.Join(faultNames(), ","), "faults to inject")
	flag.StringVar(&o.binary, "twinpbx", "", "the twinpbx binary (required for the twinpbx tool)")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.DurationVar(&o.trialMax, "trial-timeout", 40*time.Second, "bound on one trial")
	flag.Float64Var(&o.loadMax, "load-max", 1.0, "wait before a trial until the 1-minute load average is below this")
	flag.DurationVar(&o.loadWait, "load-wait", 20*time.Second, "but wait at most this long")
	verbose := flag.Bool("v", false, "log what the bed does")
	flag.Parse()
	o.tools, o.cases = split(tools), split(cases)
	for _, t := range o.tools {
		if !slices.Contains(toolNames(), t) {
			return fmt.Errorf("unknown tool %q (have %s)", t, strings.Join(toolNames(), ", "))
		}
		if t == "twinpbx" && o.binary == "" {
			return errors.New("-twinpbx: the binary is required to measure twinpbx")
		}
	}
	for _, c := range o.cases {
		if !slices.Contains(faultNames(), c) {
			return fmt.Errorf("unknown fault %q (have %s)", c, strings.Join(faultNames(), ", "))
		}
	}
	o.verbosity = slog.LevelWarn
	if *verbose {
		o.verbosity = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.verbosity})))
	if why := testbed.Unavailable(); why != "" {
		return fmt.Errorf("no test bed here: %s", why)
	}
	if slices.ContainsFunc(o.tools, func(t string) bool { return strings.HasPrefix(t, "keepalived") }) {
		if _, err := exec.LookPath("keepalived"); err != nil {
			return errors.New("keepalived is not installed (scripts/install-deps.sh bench)")
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program for the responder: %w", err)
	}
	// Stop at Ctrl-C or SIGTERM between steps; every bed is closed by the
	// trial that built it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var results []trialResult
	for _, c := range o.cases {
		for _, tool := range o.tools {
			for i := range o.trials {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				load := waitQuiet(ctx, o.loadMax, o.loadWait)
				r := runTrial(ctx, o, self, tool, c, load)
				r.n = i + 1
				fmt.Println(r.line())
				results = append(results, r)
			}
		}
	}
	rep := report(results, o)
	fmt.Print(rep)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(rep), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	return nil
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// trialResult is what one trial measured.
type trialResult struct {
	tool, fault string
	n           int
	load        float64
	outage      time.Duration
	unrecovered bool
	splitBrain  bool // both nodes answered: interleaved or one probe twice
	switches    int
	delay       time.Duration // the random wait before the fault
	err         error
}

func (r trialResult) line() string {
	if r.err != nil {
		return fmt.Sprintf("TRIAL %s %s %d load %.2f ERROR %v", r.tool, r.fault, r.n, r.load, r.err)
	}
	return fmt.Sprintf("TRIAL %s %s %d load %.2f outage %d ms unrecovered %v split-brain %v switches %d fault-after %d ms",
		r.tool, r.fault, r.n, r.load, r.outage.Milliseconds(), r.unrecovered, r.splitBrain, r.switches, r.delay.Milliseconds())
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// waitQuiet waits until the load is below max, at most wait, and returns
// the load it measures at.
func waitQuiet(ctx context.Context, maxLoad float64, wait time.Duration) float64 {
	deadline := time.Now().Add(wait)
	for {
		l := loadAvg()
		if l < maxLoad || time.Now().After(deadline) || ctx.Err() != nil {
			return l
		}
		time.Sleep(time.Second)
	}
}

// runTrial builds a bed, starts the tool's pair, breaks the active at a
// random moment and measures what the phone saw. The bed and every
// process are gone when it returns.
func runTrial(parent context.Context, o options, self, tool, fault string, load float64) (r trialResult) {
	r = trialResult{tool: tool, fault: fault, load: load}
	ctx, cancel := context.WithTimeout(parent, o.trialMax)
	defer cancel()
	bed, err := testbed.Build(ctx, testbed.Options{Phones: 1})
	if bed != nil {
		defer func() {
			if err := bed.Close(); err != nil {
				slog.Error("removing the bed", "err", err)
			}
		}()
	}
	if err != nil {
		r.err = fmt.Errorf("building the bed: %w", err)
		return r
	}
	dir, err := os.MkdirTemp("", "twinpbx-failover-")
	if err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(dir)

	var p pair
	switch tool {
	case "twinpbx":
		p, err = startTwinpbx(ctx, bed, o.binary, dir)
	case "keepalived-1":
		p, err = startKeepalived(ctx, bed, self, dir, "1", 2)
	case "keepalived-0.1":
		p, err = startKeepalived(ctx, bed, self, dir, "0.1", 3)
	}
	if err != nil {
		r.err = err
		return r
	}
	active, err := p.settle(ctx)
	if err != nil {
		r.err = err
		return r
	}
	pr := bed.NewProbe(testbed.ProbeConfig{})
	if err := pr.Start(ctx); err != nil {
		r.err = err
		return r
	}
	defer pr.Stop()
	if err := waitUntil(ctx, "the phone answered by "+string(active), func() bool {
		rep := pr.Report()
		return rep.Answered >= 10 && rep.Runs[len(rep.Runs)-1].Node == string(active)
	}); err != nil {
		r.err = err
		return r
	}
	// The fault comes at a random moment of the heartbeat or advert cycle.
	r.delay = time.Duration(rand.Int64N(int64(time.Second)))
	time.Sleep(r.delay)
	broken := time.Now()
	if err := p.breakIt(ctx, fault, active); err != nil {
		r.err = fmt.Errorf("%s on %s: %w", fault, active, err)
		return r
	}
	if fault == "xcut" {
		// Nothing may move: give it the time to go wrong.
		sleepCtx(ctx, 3*time.Second)
	} else {
		err := waitUntil(ctx, "the twin serving", func() bool {
			rep := pr.Report()
			last := rep.Runs[len(rep.Runs)-1]
			return last.Node == string(active.Twin()) && last.Last.Sub(broken) > 2*time.Second
		})
		if err != nil {
			r.err = err
			return r
		}
	}
	rep := pr.Stop()
	r.outage, r.unrecovered = rep.LongestOutage, rep.Unrecovered
	r.splitBrain = rep.Interleaved || rep.DoubleAnswered > 0
	r.switches = rep.Switches
	if fault == "xcut" {
		// Split brain shows up on the wire only when both answer; after a
		// crossover cut also look at who holds the VIP.
		both, err := bothHoldVIP(ctx, bed)
		if err != nil {
			r.err = err
			return r
		}
		r.splitBrain = r.splitBrain || both
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// waitUntil polls cond every 20 ms until it holds or ctx ends.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// bothHoldVIP reports whether A and B both have the VIP on their LAN.
func bothHoldVIP(ctx context.Context, bed *testbed.Bed) (bool, error) {
	n := 0
	for _, node := range []testbed.Node{testbed.A, testbed.B} {
		out, err := bed.Exec(ctx, bed.NS(node), "ip", "-o", "addr", "show", "dev", testbed.LANInterface)
		if err != nil {
			return false, err
		}
		if strings.Contains(string(out), " "+bed.VIP().Addr().String()+"/") {
			n++
		}
	}
	return n == 2, nil
}

// respond is the service of a keepalived node: it answers every SIP
// request on addr with a 200 naming the node in its Server header, from
// a socket bound on the VIP (ip_nonlocal_bind), so answers leave from the
// VIP whichever node holds it.
func respond(args []string) error {
	fs := flag.NewFlagSet("respond", flag.ContinueOnError)
	addr := fs.String("addr", "", "address to answer on (the VIP and port)")
	name := fs.String("name", "", "node name for the Server header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ua, err := net.ResolveUDPAddr("udp4", *addr)
	if err != nil {
		return fmt.Errorf("reading the address: %w", err)
	}
	conn, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return fmt.Errorf("listening on the VIP: %w", err)
	}
	defer conn.Close()
	buf := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			continue
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Server", *name))
		_, _ = conn.WriteToUDPAddrPort([]byte(res.String()), from)
	}
}

// Report ---------------------------------------------------------------

func report(results []trialResult, o options) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Run %s on %s, %d trials per tool and fault, %d CPUs.\n\n", time.Now().UTC().Format(time.RFC3339), host, o.trials, numCPU())
	b.WriteString("| fault | tool | trials | median outage | min | max | unrecovered | split brain | load (min–max) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range o.cases {
		for _, tool := range o.tools {
			var outs []time.Duration
			var loads []float64
			unrec, split, failed := 0, 0, 0
			for _, r := range results {
				if r.tool != tool || r.fault != c {
					continue
				}
				if r.err != nil {
					failed++
					continue
				}
				outs = append(outs, r.outage)
				loads = append(loads, r.load)
				if r.unrecovered {
					unrec++
				}
				if r.splitBrain {
					split++
				}
			}
			if len(outs) == 0 {
				fmt.Fprintf(&b, "| %s | %s | 0 (%d failed) | – | – | – | – | – | – |\n", faultTitle(c), tool, failed)
				continue
			}
			slices.Sort(outs)
			slices.Sort(loads)
			trials := fmt.Sprint(len(outs))
			if failed > 0 {
				trials += fmt.Sprintf(" (+%d failed)", failed)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %d | %.2f–%.2f |\n", faultTitle(c), tool, trials,
				ms(median(outs)), ms(outs[0]), ms(outs[len(outs)-1]), unrec, split, loads[0], loads[len(loads)-1])
		}
	}
	return b.String()
}

func median(d []time.Duration) time.Duration {
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	return (d[n/2-1] + d[n/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}
