package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child: with envTestChild set, TestMain
// runs one of the behaviours below instead of the tests. envTestModes
// lists one mode per start ("exit:1,healthy"); the child counts starts in
// a file in envTestChild's folder.
//
// With envTestParent set instead, it is a supervisor process over such
// children, with the real signal handling, for tests that signal or kill
// the supervisor itself.
const (
	envTestChild  = "SUPERVISOR_TESTCHILD_DIR"
	envTestModes  = "SUPERVISOR_TESTCHILD_MODES"
	envTestParent = "SUPERVISOR_TESTPARENT_DIR"
	envTestFG     = "SUPERVISOR_TESTPARENT_FOREGROUND"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envTestChild); dir != "" {
		os.Exit(testChild(dir, os.Getenv(envTestModes)))
	}
	if dir := os.Getenv(envTestParent); dir != "" {
		os.Exit(testParent(dir))
	}
	os.Exit(m.Run())
}

// testParent supervises test children until a signal stops it, and exits
// with their status, as `twinpbx run` will.
func testParent(dir string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parent:", err)
		return 97
	}
	err = Run(context.Background(), Config{
		Path:            exe,
		Env:             []string{envTestChild + "=" + dir},
		Dir:             dir,
		WatchdogTimeout: 10 * time.Second,
		InitialBackoff:  10 * time.Millisecond,
		Foreground:      os.Getenv(envTestFG) == "1",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "parent:", err)
	}
	return ExitCode(err)
}

// testChild runs the mode for this start and returns the exit status.
func testChild(dir, modes string) int {
	countFile := filepath.Join(dir, "starts")
	n := 0
	if b, err := os.ReadFile(countFile); err == nil {
		n, _ = strconv.Atoi(string(b))
	}
	if err := os.WriteFile(countFile, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "child: counting starts:", err)
		return 99
	}
	list := strings.Split(modes, ",")
	mode := list[min(n, len(list)-1)]
	name, arg, _ := strings.Cut(mode, ":")
	num, _ := strconv.Atoi(arg)
	fmt.Fprintf(os.Stderr, "child %d start %d mode %s\n", os.Getpid(), n, mode)

	switch name {
	case "exit":
		return num
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "spam":
		line := strings.Repeat("x", 99)
		for i := range num {
			fmt.Fprintf(os.Stderr, "%05d %s\n", i, line)
		}
		return serve(0, false)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		return serve(0, true)
	case "healthy":
		return serve(num, false)
	case "readtty":
		// Reads the terminal: a background process would be stopped.
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: reading the terminal:", err)
			return 96
		}
		fmt.Fprintf(os.Stderr, "read %s", line)
		return serve(0, false)
	case "quiet":
		// Neither kicks nor writes: nothing but a signal ends it.
		sigC := make(chan os.Signal, 1)
		signal.Notify(sigC, syscall.SIGTERM, syscall.SIGINT)
		fmt.Fprintln(os.Stderr, "ready")
		<-sigC
		return 0
	}
	fmt.Fprintln(os.Stderr, "child: unknown mode", mode)
	return 99
}

// serve kicks the hosted watchdog (if any) until SIGTERM or SIGINT, then
// disarms it and returns code.
func serve(code int, ignoreTerm bool) int {
	sigC := make(chan os.Signal, 1)
	if ignoreTerm {
		signal.Notify(sigC, syscall.SIGINT)
	} else {
		signal.Notify(sigC, syscall.SIGTERM, syscall.SIGINT)
	}
	k, err := ChildWatchdog()
	var tick <-chan time.Time
	switch {
	case errors.Is(err, ErrNoWatchdog):
		fmt.Fprintln(os.Stderr, "no watchdog")
	case err != nil:
		fmt.Fprintln(os.Stderr, "child:", err)
		return 98
	default:
		b, _ := k.BootStatus()
		fmt.Fprintf(os.Stderr, "boot reset=%v\n", b.WatchdogReset)
		t := time.NewTicker(k.Timeout() / 5)
		defer t.Stop()
		tick = t.C
	}
	fmt.Fprintln(os.Stderr, "ready")
	for {
		select {
		case <-tick:
			if err := k.Kick(); err != nil {
				fmt.Fprintln(os.Stderr, "child: kick:", err)
			}
		case sig := <-sigC:
			fmt.Fprintf(os.Stderr, "got %v\n", sig)
			if k != nil {
				if err := k.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
				}
			}
			return code
		}
	}
}
