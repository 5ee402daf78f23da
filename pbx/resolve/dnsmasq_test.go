package resolve

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/twinpbx/twinpbx/pbx/resolve/resolvetest"
)

// testDNS is a dnsmasq serving a generated zone on 127.0.0.1, behind a
// proxy that counts (and can drop) the questions the resolver asks.
type testDNS struct {
	server string // dnsmasq's address
	proxy  *countingProxy
}

// startDNSMasq starts dnsmasq (resolvetest.StartDNSMasq) behind a
// counting proxy.
func startDNSMasq(t *testing.T, ttl int, records ...string) *testDNS {
	t.Helper()
	addr := resolvetest.StartDNSMasq(t, ttl, records...)
	return &testDNS{server: addr, proxy: startProxy(t, addr)}
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
