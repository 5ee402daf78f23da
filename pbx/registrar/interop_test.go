package registrar

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

// These tests register real SIP peers (sipp, baresip) with the default
// challenge (MD5 alone), the one they can answer. They are skipped where
// the peers are not installed.

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func TestInteropSipp(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp not installed")
	}
	e := newEnvAlgos(t, newMemStore(), nil)
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\n100;[authentication username=100 password=s3cret]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, mport := freeUDPPort(t), freeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", "-sf", "testdata/register_auth.xml", "-inf", inf,
		"-m", "3", "-r", "10", "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-mp", fmt.Sprint(mport),
		"-nostdin", "-timeout", "20", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"), e.addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		t.Fatalf("sipp: %v\n%s\n%s", err, errs, lastLines(string(out), 30))
	}
	want := fmt.Sprintf("sip:100@127.0.0.1:%d", port)
	if b, ok := e.loc.Get("100", want); !ok || b.Source != "udp:127.0.0.1:"+fmt.Sprint(port) {
		t.Fatalf("binding %+v (found %v), want %s from its port", b, ok, want)
	}
}

func TestInteropBaresip(t *testing.T) {
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Skip("baresip not installed")
	}
	e := newEnvAlgos(t, newMemStore(), nil)
	dir := t.TempDir()
	port := freeUDPPort(t)
	files := map[string]string{
		"config": fmt.Sprintf("poll_method epoll\nsip_listen 127.0.0.1:%d\nnet_interface 127.0.0.1\n"+
			"audio_player none,none\naudio_alert none,none\nmodule_path /usr/lib/baresip/modules\n"+
			"module g711.so\nmodule_app account.so\n", port),
		"accounts": fmt.Sprintf("<sip:100@%s;transport=udp>;auth_pass=s3cret;regint=300\n", e.addr),
		"contacts": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out syncbuf.Buffer
	cmd := exec.Command("baresip", "-f", dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for len(e.loc.Lookup("100")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not register:\n%s", lastLines(out.String(), 20))
		}
		select {
		case <-exited:
			t.Fatalf("baresip exited:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	b := e.loc.Lookup("100")[0]
	if b.Source != fmt.Sprintf("udp:127.0.0.1:%d", port) || !strings.Contains(b.UserAgent, "baresip") {
		t.Fatalf("binding %+v", b)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
