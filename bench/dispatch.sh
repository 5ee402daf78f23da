#!/usr/bin/env bash
# dispatch.sh measures twinpbx's dispatcher role against kamailio's
# dispatcher module on this machine, in one run: short calls without
# media through the dispatcher under test to BACKENDS sipp backends
# (e2e/testdata/sipp/dispatch-backend.xml, which also answers the OPTIONS
# probes), with the same algorithm ($ALG, kamailio's numbering) and the
# same probing (every second, down after 2 unanswered, up after 2).
# kamailio runs kamailio/dispatcher.cfg (tm, stateful); twinpbx runs
# `twinpbx run` with a dispatcher section (stateless, docs/DISPATCHER.md).
#
# For each: the server's CPU time per call at a fixed common rate, and the
# highest rate in a rising series with zero failed calls, zero
# retransmissions (caller or backend side) and zero unexpected messages.
# A call is INVITE, 100 (kamailio only), 200, ACK, BYE, 200
# (bench/sipp/dispatch_uac.xml).
#
# The server runs on CPU $SERVER_CPU, every sipp on CPU $SIPP_CPU
# (taskset), all on loopback. Before every measured step the script waits
# until the 1-minute load average is below $LOAD_MAX (at most $LOAD_WAIT s
# in all) and records it. Every process it starts is stopped on exit, also
# on failure or Ctrl-C.
#
# Usage: bench/dispatch.sh [--quick] [--out FILE]
#   --quick  fewer, shorter steps (a smoke run of the harness, not a result)
#   --out    where the Markdown report goes (default bench/results-dispatch.md)
# Environment: the variables below with ':=' may be overridden, e.g.
# SERVERS=twinpbx for ours alone, ALG=4 for round robin; TWINPBX_BIN=FILE
# measures that binary instead of building the working tree (named in the
# report as TWINPBX_BIN_DESC); KEEP_WORK=1 keeps the work folder.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

out="$here/results-dispatch.md"
quick=""
args="$*"
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) quick=1 ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "dispatch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [[ -n $quick ]]; then
	: "${STEP_SECS:=4}" "${RATES:=200 800}" "${FIXED:=200}" "${LOAD_WAIT:=30}"
fi
: "${SERVER_CPU:=0}"
: "${SIPP_CPU:=1}"
: "${STEP_SECS:=10}"   # length of one measured step (at most 20)
: "${LOAD_MAX:=0.8}"
: "${LOAD_WAIT:=600}"
: "${RATES:=500 1000 2000 3000 4000 5000 6000 7000 8000 10000}"
: "${FIXED:=1000}"     # common call rate for CPU per call
: "${BACKENDS:=3}"
: "${ALG:=0}"          # 0 hash over Call-ID ... 4 round robin
: "${BASE_PORT:=28060}" # server; backends +1...; caller +40 (run.sh uses 25060-27xxx)
: "${KAM_SHM_MB:=1024}"
: "${KAM_CHILDREN:=4}"
: "${SERVERS:=kamailio twinpbx}"
((STEP_SECS <= 20)) || { echo "dispatch.sh: STEP_SECS must be at most 20" >&2; exit 2; }
((BACKENDS >= 1 && BACKENDS <= 20)) || { echo "dispatch.sh: BACKENDS must be 1..20" >&2; exit 2; }
case $ALG in 0 | 1 | 2 | 3 | 4) ;; *) echo "dispatch.sh: ALG must be 0..4" >&2; exit 2 ;; esac

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

server_port=$BASE_PORT
uac_port=$((BASE_PORT + 40))
uac_media=$((BASE_PORT + 1000))
be_media=$((BASE_PORT + 1100))
backend_scenario=$root/e2e/testdata/sipp/dispatch-backend.xml

BENCH_NAME=dispatch.sh BENCH_WORK=twinpbx-dispatch-bench.XXXXXX
source "$here/lib.sh"

command -v sipp >/dev/null && command -v kamailio >/dev/null ||
	"$root/scripts/install-deps.sh" test bench
built="not run"
if [[ " $SERVERS " == *" twinpbx "* ]]; then
	if [[ -n ${TWINPBX_BIN:-} ]]; then
		cp "$TWINPBX_BIN" "$work/twinpbx" || die "copying $TWINPBX_BIN"
		built="binary ${TWINPBX_BIN_DESC:-$TWINPBX_BIN}"
	else
		(cd "$root" && go build -o "$work/twinpbx" ./firmware/twinpbx) || die "building twinpbx"
		built="at $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- pbx firmware || echo '+changes')"
	fi
fi


# --------------------------------------------------------- the backends --

be_pids=()
start_backends() {
	local i port
	be_pids=()
	for ((i = 1; i <= BACKENDS; i++)); do
		port=$((server_port + i))
		port_free "$port" || die "UDP port $port is taken: $(ss -Hlunp "sport = :$port")"
		rm -f "$work/be-$i.csv" "$work/be-$i.err"
		taskset -c "$SIPP_CPU" sipp -sf "$backend_scenario" -i 127.0.0.1 -p "$port" -mp $((be_media + 10 * i)) \
			-nostdin -trace_stat -stf "$work/be-$i.csv" -fd 1 -trace_err -error_file "$work/be-$i.err" >/dev/null 2>&1 &
		be_pids+=($!)
		pids+=($!)
	done
	for ((i = 1; i <= BACKENDS; i++)); do
		local deadline=$((SECONDS + 10))
		until ss -Hlun "sport = :$((server_port + i))" | grep -q .; do
			((SECONDS < deadline)) || die "backend $i did not listen"
			sleep 0.1
		done
	done
}

# backend_sum COLUMN: the column summed over the backends.
backend_sum() {
	local i s=0
	for ((i = 1; i <= BACKENDS; i++)); do
		s=$((s + $(sstat "$work/be-$i.csv" "$1")))
	done
	echo "$s"
}

# backend_calls: the calls each backend completed so far ("a/b/c"); the
# dispatcher's OPTIONS probes count among them (one a second each).
backend_calls() {
	local i s=""
	for ((i = 1; i <= BACKENDS; i++)); do
		s+="${s:+/}$(sstat "$work/be-$i.csv" 'SuccessfulCall(C)')"
	done
	echo "$s"
}

# -------------------------------------------------------------- servers --

server_pid=""

start_kamailio() {
	port_free "$server_port" || die "UDP port $server_port is taken: $(ss -Hlunp "sport = :$server_port")"
	local i
	: >"$work/ds.list"
	for ((i = 1; i <= BACKENDS; i++)); do
		echo "1 sip:127.0.0.1:$((server_port + i))" >>"$work/ds.list"
	done
	mkdir -p "$work/kam"
	taskset -c "$SERVER_CPU" kamailio -f "$here/kamailio/dispatcher.cfg" -l "udp:127.0.0.1:$server_port" \
		-A "DS_LIST=\"$work/ds.list\"" -A "DS_ALG=\"$ALG\"" \
		-x tlsf -m "$KAM_SHM_MB" -M 16 -n "$KAM_CHILDREN" -DD -E \
		-Y "$work/kam" -P "$work/kam/pid" >"$work/kamailio.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	wait_listening || die "kamailio did not listen (see $work/kamailio.log)"
}

start_twinpbx() {
	port_free "$server_port" || die "UDP port $server_port is taken: $(ss -Hlunp "sport = :$server_port")"
	local i
	rm -rf "$work/data"
	{
		echo "node: {name: lb}"
		echo "sip: {listen: [\"udp:127.0.0.1:$server_port\"]}"
		echo "dispatcher:"
		echo "  algorithm: \"$ALG\""
		echo "  probe_interval: 1s"
		echo "  down_after: 2"
		echo "  up_after: 2"
		echo "  backends:"
		for ((i = 1; i <= BACKENDS; i++)); do
			echo "    - {uri: \"sip:127.0.0.1:$((server_port + i))\"}"
		done
	} >"$work/lb.yaml"
	taskset -c "$SERVER_CPU" "$work/twinpbx" run --config "$work/lb.yaml" --data "$work/data" \
		--log-level warn >"$work/twinpbx.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	wait_listening || die "twinpbx did not listen (see $work/twinpbx.log)"
}

wait_listening() {
	local deadline=$((SECONDS + 20))
	until ss -Hlunp "sport = :$server_port" | grep -qE "pid=($(tree "$server_pid" | paste -sd'|')),"; do
		kill -0 "$server_pid" 2>/dev/null || return 1
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	# Let the workers settle and the first probes be answered.
	sleep 2
}

# ----------------------------------------------------------------- a step --

# step NAME RATE: one measured step. Sets R to (rate achieved load
# cpu_us_per_call clean failed retrans unexpected per-backend).
R=()
step() {
	local name=$1 rate=$2 count=$(($2 * STEP_SECS)) t0 t1 rc=0 load
	quiet
	load=$LOAD
	local be_retrans0 be_failed0 be_calls0
	be_retrans0=$(backend_sum 'Retransmissions(C)')
	be_failed0=$(backend_sum 'FailedCall(C)')
	be_calls0=$(backend_calls)
	local limit=$((count / rate + 10))
	rm -f "$work/$name.csv" "$work/$name.err"
	t0=$(cpu_ticks "$server_pid")
	timeout -k 5 $((limit + 5)) taskset -c "$SIPP_CPU" sipp "127.0.0.1:$server_port" \
		-sf "$here/sipp/dispatch_uac.xml" -s 200 -i 127.0.0.1 -p "$uac_port" -mp "$uac_media" \
		-r "$rate" -m "$count" -l $((rate * 4 + 100 < 15000 ? rate * 4 + 100 : 15000)) \
		-nostdin -timeout "$limit" -timeout_error \
		-trace_stat -stf "$work/$name.csv" -fd 1 -trace_err -error_file "$work/$name.err" >/dev/null 2>&1 || rc=$?
	t1=$(cpu_ticks "$server_pid")
	sleep 1.5 # the backends write their statistics once a second
	local ok failed retrans unexp achieved
	ok=$(sstat "$work/$name.csv" 'SuccessfulCall(C)')
	failed=$(sstat "$work/$name.csv" 'FailedCall(C)')
	retrans=$(sstat "$work/$name.csv" 'Retransmissions(C)')
	unexp=$(($(sstat "$work/$name.csv" 'OutOfCallMsgs(C)') + $(sstat "$work/$name.csv" 'DeadCallMsgs(C)')))
	achieved=$(sstat "$work/$name.csv" 'CallRate(C)')
	retrans=$((retrans + $(backend_sum 'Retransmissions(C)') - be_retrans0))
	failed=$((failed + $(backend_sum 'FailedCall(C)') - be_failed0))
	local clean=no
	if ((rc == 0 && ok == count && failed == 0 && retrans == 0 && unexp == 0)); then clean=yes; fi
	local us
	us=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n; else print "-" }')
	local spread
	spread=$(paste -d' ' <(echo "$be_calls0" | tr / '\n') <(backend_calls | tr / '\n') | awk '{printf "%s%d", sep, $2 - $1; sep = "/"}')
	log "$name: $rate/s x $count: ok $ok failed $failed retrans $retrans unexpected $unexp, cpu ${us} us/call, backends $spread, load $load -> $clean"
	if [[ $clean == no ]]; then
		local e
		e=$(cat "$work/$name.err" "$work"/be-*.err 2>/dev/null | grep -v -e '^The following events' -e 'Overload warning' | tr '\n' ' ' | cut -c1-400) || true
		log "$name: first error: ${e:-none logged}"
	fi
	R=("$rate" "$achieved" "$load" "$us" "$clean" "$failed" "$retrans" "$unexp" "$spread")
}

declare -A res
: >"$work/ramp.md"
started=$SECONDS

bench() { # SERVER
	local s=$1 r
	start_backends
	"start_$s"
	step "$s-fixed" "$FIXED"
	set -- "${R[@]}"
	res[$s.fixed]=$4
	res[$s.fixedclean]="$5 (load $3)"
	res[$s.best]=0
	res[$s.bestus]=-
	for r in $RATES; do
		step "$s-$r" "$r"
		set -- "${R[@]}"
		echo "| $s | $1 | $2 | $4 | $5 | $6 | $7 | $8 | $9 | $3 |" >>"$work/ramp.md"
		[[ $5 == yes ]] || break
		res[$s.best]=$1
		res[$s.bestus]=$4
	done
	stop "$server_pid" "${be_pids[@]}"
	server_pid=""
}

for s in $SERVERS; do
	case $s in
	kamailio | twinpbx) log "calls through the dispatcher: $s"; bench "$s" ;;
	*) die "unknown server $s (kamailio, twinpbx)" ;;
	esac
done

v() { echo "${res[$1]:-n/a}"; }
{
	echo "## Dispatcher results of $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Command: \`bench/dispatch.sh $args\` (STEP_SECS=$STEP_SECS, FIXED=$FIXED, BACKENDS=$BACKENDS, ALG=$ALG); twinpbx $built; $((SECONDS - started)) s."
	echo
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernel $(uname -r); $(kamailio -v | head -1 | cut -d' ' -f2-3); $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1 | sed 's/\.$//'); $(go version | cut -d' ' -f3)."
	echo
	echo "| | kamailio dispatcher (tm) | twinpbx dispatcher (stateless) |"
	echo "|---|---|---|"
	echo "| CPU µs per call at $FIXED/s | $(v kamailio.fixed) | $(v twinpbx.fixed) |"
	echo "| that step clean | $(v kamailio.fixedclean) | $(v twinpbx.fixedclean) |"
	echo "| highest clean rate (calls/s) | $(v kamailio.best) | $(v twinpbx.best) |"
	echo "| CPU µs per call at that rate | $(v kamailio.bestus) | $(v twinpbx.bestus) |"
	echo
	echo "Rising rates (clean: zero failed calls, retransmissions and unexpected messages; backends: calls each backend took):"
	echo
	echo "| server | target /s | achieved /s | CPU µs/call | clean | failed | retrans | unexpected | backends | load |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	cat "$work/ramp.md"
	echo
} >"$out"
log "report written to $out"
cat "$out"
