package e2e

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

// pbxBinary is the twinpbx binary TestMain built, or buildErr why it could not.
var (
	pbxBinary string
	buildErr  error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("TWINPBX_E2E") == "off" {
		fmt.Println("e2e: TWINPBX_E2E=off, end-to-end tests skipped")
		return 0
	}
	bin, remove, err := testbed.BuildTwinpbx("twinpbx-e2e-")
	defer remove()
	pbxBinary = bin
	if err != nil {
		buildErr = err // the tests that need the binary fail with this
	}
	return m.Run()
}

// needTools fails the test when a peer program is missing: a skip would let
// a test machine without them pass.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: run scripts/install-deps.sh (or set TWINPBX_E2E=off to skip the end-to-end tests)", n)
		}
	}
}

// Extensions of the test config.
var (
	alice = config.Extension{Number: "100", Name: "Alice", Secret: "alice-secret-1"}
	bob   = config.Extension{Number: "101", Name: "Bob", Secret: "bob-secret-22"}
)

var (
	portsMu sync.Mutex
	taken   = map[int]bool{}
)

// freePorts returns the first of n consecutive loopback ports that are free
// for both UDP and TCP now and not handed out to a running test of this
// process; they return to the pool when the test ends.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		// Below Linux's ephemeral range (32768 up), so that no client
		// socket takes a port between our check and its use.
		base := 20000 + 2*rand.IntN(6000)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = !taken[p] && portFree(p)
		}
		if ok {
			for p := base; p < base+n; p++ {
				taken[p] = true
			}
			t.Cleanup(func() {
				portsMu.Lock()
				defer portsMu.Unlock()
				for p := base; p < base+n; p++ {
					delete(taken, p)
				}
			})
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports found", n)
	return 0
}

func portFree(p int) bool {
	u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	u.Close()
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// bound reports whether some process listens on the port (UDP, or TCP
// when tcp), read from /proc so that the probe never takes the port itself.
func bound(port int, tcp bool) bool {
	file, state := "/proc/net/udp", "07" // unconnected UDP sockets show as TCP_CLOSE
	if tcp {
		file, state = "/proc/net/tcp", "0A" // TCP_LISTEN
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == state {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, timeout, what, cond)
}

// rtpPorts is the size of each test PBX's relay port range: 20 calls.
const rtpPorts = 40

// pbx is one twinpbx run process with its config and data folder.
type pbx struct {
	t       *testing.T
	port    int
	rtpLow  int
	cfg     config.Config
	cfgPath string
	dataDir string

	cmd    *exec.Cmd
	log    *syncbuf.Buffer
	exited chan struct{}
	runs   int
}

// startPBX writes a config with the given extensions on free ports and
// starts twinpbx run; it returns once the PBX logged that it is ready. The
// process is stopped when the test ends, and its log is printed if the
// test failed.
func startPBX(t *testing.T, exts ...config.Extension) *pbx {
	t.Helper()
	return startPBXWith(t, nil, exts...)
}

// startPBXWith is startPBX with the config changed by edit (when not nil)
// before it is written.
func startPBXWith(t *testing.T, edit func(*config.Config), exts ...config.Extension) *pbx {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	p := &pbx{
		t:       t,
		port:    freePorts(t, 2),
		rtpLow:  freePorts(t, rtpPorts),
		cfgPath: filepath.Join(dir, "config.yaml"),
		dataDir: filepath.Join(dir, "data"),
	}
	p.cfg = config.Config{
		Node: config.Node{Name: "a"},
		SIP: config.SIP{
			Listen: []string{
				fmt.Sprintf("udp:127.0.0.1:%d", p.port),
				fmt.Sprintf("tcp:127.0.0.1:%d", p.port),
			},
			RTPPorts: fmt.Sprintf("%d-%d", p.rtpLow, p.rtpLow+rtpPorts-1),
		},
		Extensions: exts,
	}
	if edit != nil {
		edit(&p.cfg)
	}
	y, err := yaml.Marshal(p.cfg)
	if err != nil {
		t.Fatalf("encoding the test config: %v", err)
	}
	if err := os.WriteFile(p.cfgPath, y, 0o600); err != nil {
		t.Fatalf("writing the test config: %v", err)
	}
	if err := os.Mkdir(p.dataDir, 0o700); err != nil {
		t.Fatalf("making the data folder: %v", err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("twinpbx log:\n%s", p.log)
		}
	})
	p.start()
	return p
}

// addr is the PBX's SIP address, host:port.
func (p *pbx) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *pbx) start() {
	t := p.t
	t.Helper()
	p.runs++
	if p.log == nil {
		p.log = &syncbuf.Buffer{}
	}
	fmt.Fprintf(p.log, "---- run %d\n", p.runs)
	p.cmd = exec.Command(pbxBinary, "run", "--config", p.cfgPath, "--data", p.dataDir, "--log-level", "debug")
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting twinpbx: %v", err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.cmd, p.exited)
	run := fmt.Sprintf("---- run %d\n", p.runs)
	waitFor(t, 20*time.Second, "twinpbx to log msg=ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("twinpbx exited before it was ready: %v", p.cmd.ProcessState)
		default:
		}
		log := p.log.String()
		return strings.Contains(log[strings.LastIndex(log, run):], `msg=ready`)
	})
}

// stop ends the PBX with SIGTERM, as an init system would, and fails the
// test unless it exits cleanly within 10 s.
func (p *pbx) stop() {
	t := p.t
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM to twinpbx: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
		t.Fatal("twinpbx did not exit within 10 s of SIGTERM")
	}
	if !p.cmd.ProcessState.Success() {
		t.Errorf("twinpbx exited with %v after SIGTERM", p.cmd.ProcessState)
	}
}

func (p *pbx) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// cdrs returns the PBX's call detail records, exported as CSV by the CLI
// while the PBX runs, one map per record keyed by the CSV header.
func (p *pbx) cdrs() ([]map[string]string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(pbxBinary, "cdr", "export", "--data", p.dataDir)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("twinpbx cdr export: %w: %s", err, errb.String())
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading the CDR CSV: %w", err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], cdr.CSVHeader) {
		return nil, fmt.Errorf("CDR CSV header is %q, want %q", rows[0:min(1, len(rows))], cdr.CSVHeader)
	}
	var recs []map[string]string
	for _, r := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = r[i]
		}
		recs = append(recs, m)
	}
	return recs, nil
}

// status decodes the JSON of `twinpbx status` into v.
func (p *pbx) status(v any) error {
	out, err := exec.Command(pbxBinary, "status", "--data", p.dataDir).Output()
	if err != nil {
		return fmt.Errorf("twinpbx status: %w", err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("reading twinpbx status: %w", err)
	}
	return nil
}

// waitCDR waits until the PBX has written a CDR for which match holds and
// returns it.
func (p *pbx) waitCDR(match func(map[string]string) bool) map[string]string {
	t := p.t
	t.Helper()
	var (
		found   map[string]string
		lastErr error
		last    []map[string]string
	)
	deadline := time.Now().Add(10 * time.Second)
	for found == nil {
		last, lastErr = p.cdrs()
		for _, r := range last {
			if match(r) {
				found = r
			}
		}
		if found != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching CDR after 10 s; last export: %v, error: %v", last, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return found
}

// sippProc is one sipp process running a scenario.
type sippProc struct {
	t        *testing.T
	name     string
	port     int
	tcp      bool
	cmd      *exec.Cmd
	out      *syncbuf.Buffer
	msgFile  string
	errFile  string
	done     chan struct{}
	exitCode int
}

// sippOpts describe one sipp run.
type sippOpts struct {
	scenario string // file in testdata/sipp
	remote   string // host:port, empty for a UAS
	service  string // -s: the user in the Request-URI (UAC) or Contact (UAS)
	user     string // -au: digest user; "" for no auth
	pass     string // -ap
	port     int    // -p; 0 for a free one
	pause    time.Duration
	tcp      bool              // -t t1 instead of UDP
	keys     map[string]string // -key NAME VALUE
	calls    int               // -m: calls to make or take, one at a time (0: 1)
}

// startSipp starts sipp for o.calls calls, one at a time (one call when
// o.calls is 0), with a 30 s limit per call and
// message traces; the process is killed when the test ends and its traces
// are printed if the test failed.
func startSipp(t *testing.T, o sippOpts) *sippProc {
	t.Helper()
	if o.port == 0 {
		o.port = freePorts(t, 2)
	}
	dir := t.TempDir()
	name := strings.TrimSuffix(filepath.Base(o.scenario), ".xml")
	s := &sippProc{
		t: t, name: name, port: o.port, tcp: o.tcp,
		out:     &syncbuf.Buffer{},
		msgFile: filepath.Join(dir, name+".msg"),
		errFile: filepath.Join(dir, name+".err"),
		done:    make(chan struct{}),
	}
	media := freePorts(t, 4)
	args := []string{
		"-sf", filepath.Join("testdata", "sipp", o.scenario),
		"-i", "127.0.0.1", "-mi", "127.0.0.1",
		"-p", strconv.Itoa(o.port), "-mp", strconv.Itoa(media),
		"-m", strconv.Itoa(max(1, o.calls)), "-l", "1", "-nostdin",
		"-timeout", "30", "-timeout_error",
		"-trace_msg", "-message_file", s.msgFile,
		"-trace_err", "-error_file", s.errFile,
	}
	if o.tcp {
		args = append(args, "-t", "t1")
	}
	if o.service != "" {
		args = append(args, "-s", o.service)
	}
	if o.user != "" {
		args = append(args, "-au", o.user, "-ap", o.pass)
		if o.remote != "" && o.service != "" && !strings.HasPrefix(name, "register") {
			// sipp's digest uri is remote_ip:port unless told; a server
			// rightly checks it against the Request-URI.
			args = append(args, "-auth_uri", o.service+"@"+o.remote)
		}
	}
	if o.pause > 0 {
		args = append(args, "-d", strconv.FormatInt(o.pause.Milliseconds(), 10))
	}
	keys := slices.Sorted(mapKeys(o.keys))
	for _, k := range keys {
		args = append(args, "-key", k, o.keys[k])
	}
	if o.remote != "" {
		args = append(args, o.remote)
	}
	s.cmd = exec.Command("sipp", args...)
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting sipp %s: %v", name, err)
	}
	go func() {
		err := s.cmd.Wait()
		s.exitCode = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.exitCode = ee.ExitCode()
		} else if err != nil {
			s.exitCode = -1
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			s.dump()
		}
	})
	return s
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// waitBound waits until sipp listens on its port, so that a call to it
// cannot race its start.
func (s *sippProc) waitBound() {
	s.t.Helper()
	waitFor(s.t, 10*time.Second, "sipp "+s.name+" to bind its port", func() bool {
		select {
		case <-s.done:
			s.t.Fatalf("sipp %s exited with %d before it listened", s.name, s.exitCode)
		default:
		}
		return bound(s.port, s.tcp)
	})
}

// wait waits for sipp to end and fails the test unless it exited with want
// (0: every call succeeded).
func (s *sippProc) wait(want int) {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(45 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("sipp %s still running after 45 s", s.name)
		return
	}
	if s.exitCode != want {
		s.t.Errorf("sipp %s exited with %d, want %d", s.name, s.exitCode, want)
	}
}

func (s *sippProc) dump() {
	for _, f := range []string{s.msgFile, s.errFile} {
		if b, err := os.ReadFile(f); err == nil {
			s.t.Logf("sipp %s %s:\n%s", s.name, filepath.Ext(f), lastLines(string(b), 200))
		}
	}
	s.t.Logf("sipp %s output:\n%s", s.name, lastLines(s.out.String(), 40))
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// runSipp runs sipp to its end and checks its exit code.
func runSipp(t *testing.T, o sippOpts, want int) *sippProc {
	t.Helper()
	s := startSipp(t, o)
	s.wait(want)
	return s
}

// caller gives the -key values the uac scenarios take for the calling
// extension.
func caller(e config.Extension) map[string]string {
	return map[string]string{"caller": e.Number, "caller_name": e.Name}
}

func itoa(i int) string { return strconv.Itoa(i) }
