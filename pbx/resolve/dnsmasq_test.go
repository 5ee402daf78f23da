package resolve

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a dnsmasq serving a generated zone on 127.0.0.1, behind a
// proxy that counts (and can drop) the questions the resolver asks.
type testDNS struct {
	server string // dnsmasq's address
	proxy  *countingProxy
}

// startDNSMasq starts dnsmasq with the record options given (e.g.
// "--srv-host=_sip._udp.example.test,pbx.example.test,5060,10,50") and a
// local TTL of ttl seconds, and stops it when the test ends.
func startDNSMasq(t *testing.T, ttl int, records ...string) *testDNS {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is not installed (the tests need a real DNS server): run scripts/install-deps.sh: %v", err)
	}
	var lastErr error
	for range 5 {
		port := freeUDPPort(t)
		args := append([]string{
			"--keep-in-foreground", "--local=/test/", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
			fmt.Sprintf("--port=%d", port), "--listen-address=127.0.0.1", "--bind-interfaces",
			fmt.Sprintf("--local-ttl=%d", ttl), "--log-facility=-", "--user=" + currentUser(),
		}, records...)
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting dnsmasq: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitDNS(addr, done); err != nil {
			_ = cmd.Process.Kill()
			<-done
			lastErr = fmt.Errorf("%w; dnsmasq said: %s", err, out.String())
			continue // most likely the port was taken meanwhile
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("dnsmasq output:\n%s", out.String())
			}
		})
		return &testDNS{server: addr, proxy: startProxy(t, addr)}
	}
	t.Fatalf("dnsmasq did not come up: %v", lastErr)
	return nil
}

func currentUser() string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		return "root"
	}
	return strings.TrimSpace(string(out))
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitDNS polls addr until it answers a query, dnsmasq exits, or 10 s pass.
func waitDNS(addr string, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	q := new(dns.Msg)
	q.SetQuestion("ready.invalid.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("dnsmasq exited: %v", err)
		default:
		}
		if _, _, err := c.Exchange(q, addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("dnsmasq did not answer within 10 s")
}

// countingProxy forwards UDP DNS queries to a server, recording each
// question; with drop set it swallows them instead, like a dead server.
type countingProxy struct {
	addr string
	drop atomic.Bool

	mu        sync.Mutex
	questions []string // "NAPTR example.test"
}

func startProxy(t *testing.T, upstream string) *countingProxy {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{addr: pc.LocalAddr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pkt := append([]byte(nil), buf[:n]...)
			var m dns.Msg
			if m.Unpack(pkt) == nil && len(m.Question) == 1 {
				p.mu.Lock()
				p.questions = append(p.questions, dns.TypeToString[m.Question[0].Qtype]+" "+canonical(m.Question[0].Name))
				p.mu.Unlock()
			}
			if p.drop.Load() {
				continue
			}
			wg.Go(func() {
				up, err := net.Dial("udp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				_ = up.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := up.Write(pkt); err != nil {
					return
				}
				ans := make([]byte, 65535)
				n, err := up.Read(ans)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(ans[:n], from)
			})
		}
	})
	return p
}

// asked returns the questions asked so far and forgets them.
func (p *countingProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.questions
	p.questions = nil
	return q
}
