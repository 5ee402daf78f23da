#!/usr/bin/env bash
# startup.sh measures how long twinpbx takes on this machine's own CPU
# from its start to its "SIP listening" line on a first boot (an empty
# data folder: supervisor, worker, starter config with random secrets,
# listeners), RUNS times. It is the native counterpart of the VM boot
# benchmark (image/vmtest BenchmarkBoot), from which docs/IMAGE.md
# estimates a board's boot.
#
# Usage: bench/startup.sh [RUNS]   (default 5)
# The binary is built as the image builds it. Every process it starts is
# stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${1:-5}
((runs >= 1)) || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

BENCH_NAME=startup.sh BENCH_WORK=twinpbx-startup.XXXXXX
source "$here/lib.sh"
(cd "$root" && go build -trimpath -ldflags='-s -w -buildid=' -o "$work/twinpbx" ./firmware/twinpbx) || die "building twinpbx"

for i in $(seq "$runs"); do
	rm -rf "$work/data"
	mkfifo "$work/out"
	start=$(date +%s%N)
	"$work/twinpbx" run --data "$work/data" >"$work/out" 2>&1 &
	pid=$!
	pids+=("$pid")
	grep -m1 -q 'SIP listening' <"$work/out" || die "run $i: twinpbx ended before listening"
	end=$(date +%s%N)
	stop "$pid"
	rm -f "$work/out"
	printf 'run %d: %d ms to SIP listening\n' "$i" $(((end - start) / 1000000))
done
