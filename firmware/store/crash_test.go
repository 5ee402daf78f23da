package store

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var crashLoops = flag.Int("store.crashloops", 0, "kill-and-reopen rounds of TestCrashKill (0: $STORE_CRASHLOOPS, else 30)")

func crashRounds(t *testing.T) int {
	if *crashLoops > 0 {
		return *crashLoops
	}
	if v := os.Getenv("STORE_CRASHLOOPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("STORE_CRASHLOOPS=%q: want a positive number", v)
		}
		return n
	}
	return 30
}

// TestCrashKill runs a writer that acknowledges each write on stdout once
// the store returned, kills it with SIGKILL at a random moment, and checks
// after every kill that the store opens as it is, passes bbolt's
// consistency check, holds every acknowledged write and has a contiguous
// change log. The writer keeps a short log, so trimming is crashed too.
func TestCrashKill(t *testing.T) { crashKill(t, 1) }

// TestCrashKillConcurrent is TestCrashKill with many writers at once, so
// the kills land in commits shared by several writes (group commit).
func TestCrashKillConcurrent(t *testing.T) { crashKill(t, 8) }

// crashKill runs the kill loop against a writer with the given number of
// CDR and binding writers.
func crashKill(t *testing.T, writers int) {
	if testing.Short() {
		t.Skip("builds and kills a writer process")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the writer")
	}
	bin := filepath.Join(t.TempDir(), "crashwriter")
	build := exec.Command(goBin, "build", "-o", bin, "./internal/crashwriter")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the writer: %v\n%s", err, out)
	}

	rounds := crashRounds(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("%d rounds, seed %d", rounds, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	ackedCDRs := map[string]bool{}
	ackedBindings := map[string]bool{} // "aor contact"
	var lastSeq uint64
	for round := range rounds {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "-dir", dir, "-prefix", fmt.Sprint("r", round), "-logkeep", "300", "-writers", fmt.Sprint(writers))
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		// The kill moment itself is what is being randomised here.
		time.Sleep(time.Duration(10+rng.IntN(291)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: writer ended by itself (%v) before the kill:\n%s", round, err, stderr.Bytes())
		}
		// Only whole lines count: the kill may cut the last one short.
		out := stdout.Bytes()
		out = out[:bytes.LastIndexByte(out, '\n')+1]
		sc := bufio.NewScanner(bytes.NewReader(out))
		n := 0
		for sc.Scan() {
			kind, id, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				t.Fatalf("round %d: writer printed %q", round, sc.Text())
			}
			switch kind {
			case "cdr":
				ackedCDRs[id] = true
			case "bind":
				ackedBindings[id] = true
			default:
				t.Fatalf("round %d: writer printed %q", round, sc.Text())
			}
			n++
		}

		seq := verifyAfterCrash(t, round, dir, ackedCDRs, ackedBindings)
		if seq < lastSeq {
			t.Fatalf("round %d: Seq went back from %d to %d", round, lastSeq, seq)
		}
		lastSeq = seq
		t.Logf("round %d: %d acks, seq %d", round, n, seq)
	}
	if len(ackedCDRs) == 0 || len(ackedBindings) == 0 {
		t.Fatal("the writer acknowledged nothing in any round: the test proved nothing")
	}
}

// verifyAfterCrash reopens the store after a kill and checks it.
func verifyAfterCrash(t *testing.T, round int, dir string, cdrs, bindings map[string]bool) uint64 {
	t.Helper()
	s, err := Open(dir, Options{LogKeep: 300, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("round %d: reopening after kill: %v", round, err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	recs, err := s.CDRs(time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.ID] = true
	}
	for id := range cdrs {
		if !have[id] {
			t.Fatalf("round %d: acknowledged CDR %s is missing", round, id)
		}
	}
	bs, err := s.LoadBindings()
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	have = map[string]bool{}
	for _, b := range bs {
		have[b.AOR+" "+b.Contact] = true
	}
	for id := range bindings {
		if !have[id] {
			t.Fatalf("round %d: acknowledged binding %s is missing", round, id)
		}
	}
	first, last, err := s.LogBounds()
	if err != nil {
		t.Fatal(err)
	}
	if last != s.Seq() || first > last+1 || last-first+1 > 300 {
		t.Fatalf("round %d: log bounds %d..%d, Seq %d", round, first, last, s.Seq())
	}
	if first > 0 {
		cs, err := s.ChangesSince(first-1, 0)
		if err != nil {
			t.Fatalf("round %d: reading the log: %v", round, err)
		}
		for i, c := range cs {
			if c.Seq != first+uint64(i) {
				t.Fatalf("round %d: log entry %d has seq %d, want %d", round, i, c.Seq, first+uint64(i))
			}
		}
		if uint64(len(cs)) != last-first+1 {
			t.Fatalf("round %d: log holds %d changes, want %d..%d", round, len(cs), first, last)
		}
	}
	return last
}
