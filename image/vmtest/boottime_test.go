package vmtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkBoot measures the boot to SIP: from QEMU's start until the
// box answers SIP OPTIONS, and the guest's own uptime when init starts
// twinpbx. The cases are the steps from the old way of booting to
// today's (docs/IMAGE.md "Boot time"):
//
//	go test -run='^$' -bench=Boot -benchtime=3x ./image/vmtest
func BenchmarkBoot(b *testing.B) {
	if testing.Short() {
		b.Skip("VM boots skipped under -short")
	}
	img := image(b)
	raw, err := Uncompressed(context.Background(), img)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		initrd string
		extra  []string
		append string
	}{
		{"xz,qemu64", "", []string{"-cpu", "qemu64"}, "quiet"}, // before: no RDRAND, xz initramfs
		{"xz,max", "", nil, "quiet"},
		{"cpio,max", raw, nil, "quiet"},
		{"cpio,max,notests", raw, nil, bootAppend}, // today's TestBoot, make qemu and the twin VMs
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var sip, uptime time.Duration
			for b.Loop() {
				s, u := bootOnce(b, Config{Image: img, Initrd: c.initrd, Extra: c.extra, Append: c.append})
				sip += s
				uptime += u
			}
			b.ReportMetric(sip.Seconds()/float64(b.N), "s-to-SIP")
			b.ReportMetric(uptime.Seconds()/float64(b.N), "s-uptime-at-init-done")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// bootOnce boots c and returns the time from QEMU's start until SIP
// OPTIONS were answered, and the guest's uptime when init started
// twinpbx.
func bootOnce(b *testing.B, c Config) (toSIP, uptime time.Duration) {
	b.Helper()
	c.SIPPort = freeUDPPort(b)
	m := boot(b, c)
	defer m.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	server, err := Options(ctx, fmt.Sprintf("127.0.0.1:%d", c.SIPPort))
	if err != nil {
		b.Fatal(err)
	}
	toSIP = time.Since(m.Started)
	if !strings.HasPrefix(server, "twinpbx/") {
		b.Fatalf("OPTIONS answered by %q", server)
	}
	up, ok := BootDoneUptime(m.Console())
	if !ok {
		b.Fatalf("no uptime on init's boot done line:\n%s", m.Console())
	}
	return toSIP, up
}
