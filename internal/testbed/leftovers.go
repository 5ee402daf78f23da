package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidDir holds one file per live bed, named after its prefix and holding
// the pid of the process that built it. A bed whose process is gone was
// not closed: its namespaces are provably leftovers.
const pidDir = "/run/twinpbx-testbed"

func pidFile(prefix string) string { return filepath.Join(pidDir, prefix+".pid") }

func writePIDFile(prefix string) error {
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return fmt.Errorf("creating the test bed pid directory: %w", err)
	}
	f, err := os.OpenFile(pidFile(prefix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("claiming bed name %s: %w", prefix, err)
	}
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	return errors.Join(err, f.Close())
}

// removeLeftovers removes the namespaces of beds whose builder died.
func removeLeftovers(ctx context.Context, log *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(pidDir, "*.pid"))
	if len(files) == 0 {
		return
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	var all []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			all = append(all, f[0])
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		prefix := strings.TrimSuffix(filepath.Base(f), ".pid")
		for _, ns := range all {
			if strings.HasPrefix(ns, prefix+"-") {
				killNamespace(ctx, ns)
				if err := run(ctx, "ip", "netns", "del", ns); err != nil {
					log.Warn("removing a leftover namespace", "ns", ns, "err", err)
				}
			}
		}
		_ = os.Remove(f)
		log.Info("removed a leftover test bed", "bed", prefix, "pid", pid)
	}
}
