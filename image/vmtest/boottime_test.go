package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
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
			var sip, uptime, cpu []float64
			for b.Loop() {
				r := bootOnce(b, Config{Image: img, Initrd: c.initrd, Extra: c.extra, Append: c.append})
				sip = append(sip, r.toSIP.Seconds())
				uptime = append(uptime, r.uptime.Seconds())
				cpu = append(cpu, r.cpu.Seconds())
			}
			b.ReportMetric(mean(sip), "s-to-SIP")
			b.ReportMetric(slices.Min(sip), "s-to-SIP-min")
			b.ReportMetric(slices.Max(sip), "s-to-SIP-max")
			b.ReportMetric(mean(uptime), "s-uptime-at-init-done")
			b.ReportMetric(mean(cpu), "s-QEMU-CPU-to-SIP")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: s to SIP %.2f, uptime at init done %.2f, QEMU CPU s %.2f; load average %s",
				c.name, sip, uptime, cpu, loadAverage())
		})
	}
}

// bootResult is one boot's figures.
type bootResult struct {
	// toSIP is from QEMU's start until SIP OPTIONS were answered.
	toSIP time.Duration
	// uptime is the guest's when init started twinpbx.
	uptime time.Duration
	// cpu is the CPU time QEMU had used when OPTIONS were answered: on
	// a loaded machine it grows far less than the wall time, so it
	// compares variants measured at different loads better.
	cpu time.Duration
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// loadAverage is the host's load average over 1, 5 and 15 minutes, for
// the log of a measurement.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// processCPU is the user and system CPU time process pid has used so far
// (/proc/PID/stat; the kernel's clock ticks are 100 a second on the
// machines this runs on).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// bootOnce boots c and returns its figures.
func bootOnce(b *testing.B, c Config) bootResult {
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
	toSIP := time.Since(m.Started)
	cpu, err := processCPU(m.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	if !strings.HasPrefix(server, "twinpbx/") {
		b.Fatalf("OPTIONS answered by %q", server)
	}
	up, ok := BootDoneUptime(m.Console())
	if !ok {
		b.Fatalf("no uptime on init's boot done line:\n%s", m.Console())
	}
	return bootResult{toSIP: toSIP, uptime: up, cpu: cpu}
}

func TestProcessCPU(t *testing.T) {
	// Work until this process has used a clock tick: the CPU time must
	// grow from zero (a loaded machine may take a while to give it).
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		got, err := processCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("processCPU(self) stayed 0 through 30 s of work")
		}
		for i := range 100000 {
			_ = strconv.Itoa(n + i)
		}
	}
	if _, err := processCPU(-1); err == nil {
		t.Error("processCPU(-1) gave no error")
	}
}
