#!/usr/bin/env bash
# run.sh measures failover on the network-namespace test bed, in one run:
#
#   1. the longest stretch of a phone's SIP OPTIONS probes (one every 20 ms
#      to the VIP) that went unanswered when the active box breaks, for
#      twinpbx's twin pair and for keepalived (VRRP, advert_int 1 and 0.1),
#      for each fault: SIGKILL of the active's software, power off, LAN
#      carrier cut, silent crossover cut; and whether both boxes ever
#      answered (split brain as the phone sees it) — bench/failover/main.go;
#   2. the audio gap of an answered call, per direction, across a SIGKILL
#      failover of twinpbx (TestCallAudioTrials in firmware/twin/nstest).
#
# Each trial builds its own bed and breaks the active at a random moment.
# Before each trial the program waits (at most LOAD_WAIT) for the 1-minute
# load average to drop below LOAD_MAX and records it. Everything runs in
# namespaces; every bed and process is removed at the end of its trial,
# and on exit, failure or Ctrl-C. The whole run is bounded by RUN_TIMEOUT.
#
# Usage (as root): bench/failover/run.sh [--trials N] [--quick] [--out FILE]
#   --trials  trials per tool and fault, and audio trials (default 10)
#   --quick   1 trial each: a smoke run of the harness, not a result
#   --out     where the Markdown report goes (default bench/failover/results.md)
# Environment: TOOLS, CASES (comma lists, see `go run ./bench/failover -h`),
# LOAD_MAX (1.0), LOAD_WAIT (20s), RUN_TIMEOUT (seconds, 3600).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

trials=10
out="$here/results.md"
args="$*"
while [[ $# -gt 0 ]]; do
	case $1 in
	--trials) trials=$2; shift ;;
	--quick) trials=1 ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
: "${TOOLS:=twinpbx,keepalived-1,keepalived-0.1}"
: "${CASES:=kill,poweroff,lancut,xcut}"
: "${LOAD_MAX:=1.0}"
: "${LOAD_WAIT:=20s}"
: "${RUN_TIMEOUT:=3600}"

if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh: network namespaces need root" >&2
	exit 2
fi
for tool in ip nft keepalived go; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (scripts/install-deps.sh test bench)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/twinpbx-failover-bench.XXXXXX)
child=""
cleanup() {
	# The program removes its beds when told to stop; give it the time.
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'failover bench: %s\n' "$*" >&2; }

cd "$root"
log "building twinpbx and the benchmark"
go build -o "$work/twinpbx" ./firmware/twinpbx
go build -o "$work/failover" ./bench/failover
start=$(date +%s)

log "VIP outage: $trials trials per tool and fault"
timeout --kill-after=20 "$RUN_TIMEOUT" "$work/failover" -trials "$trials" -twinpbx "$work/twinpbx" \
	-tools "$TOOLS" -cases "$CASES" -load-max "$LOAD_MAX" -load-wait "$LOAD_WAIT" -out "$work/vip.md" \
	>"$work/vip.log" &
child=$!
wait "$child"
child=""
grep '^TRIAL' "$work/vip.log" >&2 || true

left=$((RUN_TIMEOUT - ($(date +%s) - start)))
((left > 60)) || { echo "run.sh: no time left for the audio trials" >&2; exit 1; }
log "call audio: $trials SIGKILL failovers under a call"
timeout --kill-after=20 "$left" go test -count=1 -v -timeout "${left}s" -run '^TestCallAudioTrials$' \
	./firmware/twin/nstest/ -args -audio.trials "$trials" >"$work/audio.log" 2>&1 &
child=$!
if ! wait "$child"; then
	child=""
	grep -E '^(---|\s+---|FAIL|\s+audio_test)' "$work/audio.log" >&2 || true
	echo "run.sh: the audio trials failed (log above)" >&2
	exit 1
fi
child=""
grep -E '^AUDIO-' "$work/audio.log" >&2

{
	echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(uname -r); keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}')."
	echo "Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')."
	echo "Command: \`bench/failover/run.sh $args\` (as root)."
	echo
	sed 's/^Run /VIP outage, run /' "$work/vip.md"
	echo
	echo "Call audio across a SIGKILL failover of twinpbx (longest gap between two RTP packets a phone received, the worse direction of each trial; 20 ms packets both ways):"
	echo
	echo '```'
	grep -E '^AUDIO-' "$work/audio.log"
	echo '```'
} >"$out"
log "report written to $out"
cat "$out"
