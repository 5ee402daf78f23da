// Package resolvetest starts a real DNS server (Debian's dnsmasq) for
// tests of SIP resolution: a generated zone on 127.0.0.1 at a random port,
// stopped when the test ends.
package resolvetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"os/user"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// StartDNSMasq starts dnsmasq answering for the record options given
// (dnsmasq's command-line form, e.g.
// "--srv-host=_sip._udp.example.test,pbx.example.test,5060,10,50"), with
// ttl seconds as the TTL of its local records, and returns its address.
// Names under .test that it has no record for get NXDOMAIN (NOERROR
// without answers when the name exists), other names REFUSED. The test
// fails, not skips, when dnsmasq is not installed.
func StartDNSMasq(t testing.TB, ttl int, options ...string) string {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is not installed (the tests need a real DNS server): run scripts/install-deps.sh: %v", err)
	}
	var lastErr error
	for range 5 {
		port, err := freeUDPPort()
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{
			"--keep-in-foreground", "--local=/test/", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
			fmt.Sprintf("--port=%d", port), "--listen-address=127.0.0.1", "--bind-interfaces",
			fmt.Sprintf("--local-ttl=%d", ttl), "--log-facility=-", "--user=" + currentUser(),
		}, options...)
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
		return addr
	}
	t.Fatalf("dnsmasq did not come up: %v", lastErr)
	return ""
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
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
