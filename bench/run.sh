#!/usr/bin/env bash
# run.sh measures twinpbx against kamailio on this machine, in one run:
#
#   1. REGISTER with digest auth: kamailio as an in-memory registrar
#      (kamailio/registrar.cfg) and twinpbx's registrar;
#   2. short authenticated calls without media: kamailio as a stateful
#      proxy (kamailio/proxy.cfg) and twinpbx's B2BUA, both towards a sipp
#      callee that registered first.
#
# For each: the server's CPU time per operation at a fixed common rate, the
# highest rate in a rising series with zero failed calls, zero
# retransmissions and zero unexpected messages, and the memory each
# registration and each held call costs (PSS, summed over the server's
# processes, so kamailio's shared memory is counted once).
#
# The server runs on CPU $SERVER_CPU, sipp on CPU $SIPP_CPU (taskset), all on
# loopback. Before every measured step the script waits until the 1-minute
# load average is below $LOAD_MAX (at most $LOAD_WAIT s) and records it.
# Every process it starts is stopped on exit, also on failure or Ctrl-C.
#
# Usage: bench/run.sh [--quick] [--only register|calls] [--out FILE]
#   --quick  fewer, shorter steps (a smoke run of the harness, not a result)
#   --out    where the Markdown report goes (default bench/results.md)
# Environment: the variables below with ':=' may be overridden, e.g.
# SERVERS=kamailio for the reference alone; KEEP_WORK=1 keeps the work
# folder (logs, perf.data) after a successful run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

out="$here/results.md"
only=""
quick=""
args="$*"
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) quick=1 ;;
	--only) only=$2; shift ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [[ -n $quick ]]; then
	: "${STEP_SECS:=4}" "${REG_RATES:=1000 4000}" "${CALL_RATES:=200 800}"
	: "${REG_FIXED:=1000}" "${CALL_FIXED:=200}" "${HELD_CALLS:=20}" "${HOLD_MS:=8000}"
	: "${LOAD_WAIT:=60}"
fi
: "${SERVER_CPU:=0}"
: "${SIPP_CPU:=1}"
: "${STEP_SECS:=10}"        # length of one measured step (at most 20)
: "${LOAD_MAX:=0.8}"
: "${LOAD_WAIT:=600}"
: "${REG_RATES:=250 500 1000 2000 4000 6000 8000 10000 13000 16000 20000 25000 30000}"
: "${CALL_RATES:=100 250 500 1000 1500 2000 3000 4000 5000 6000 7000 8000}"
: "${REG_FIXED:=500}"       # common REGISTER rate for CPU per operation
: "${CALL_FIXED:=250}"      # common call rate for CPU per operation
: "${HELD_CALLS:=100}"      # concurrent calls held for the memory figure (≤ 200)
: "${HOLD_MS:=20000}"
: "${CALL_PROCS:=20}"       # parallel sipp callers, one callee each (see below)
: "${BASE_PORT:=25060}"     # kamailio; twinpbx +10, callee +30, callers +140...
: "${KAM_SHM_MB:=1024}"
: "${KAM_CHILDREN:=4}"
: "${SERVERS:=kamailio twinpbx}"
if ((STEP_SECS > 20)); then
	echo "run.sh: STEP_SECS must be at most 20" >&2
	exit 2
fi

# sipp wants more descriptors than open calls (-l) at high rates; -l is
# also capped at 15,000 below (the hard limit here is 20,000).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

kam_port=$BASE_PORT
pbx_port=$((BASE_PORT + 10))
uac_port=$((BASE_PORT + 20))
uas_port=$((BASE_PORT + 30))
procs_port=$((BASE_PORT + 140))
uac_media=$((BASE_PORT + 1000)) # sipp binds media ports even without media
uas_media=$((BASE_PORT + 1100))
first_user=10000
last_user=19999
# Calls: caller k of CALL_PROCS calls callee 19999-k only, and waits for
# each call to end before the next (-l 1). sipp computes the digest uri
# of every call from one -auth_uri, and twinpbx gives an extension at
# most two calls at once (one waiting), so one callee per sipp process is
# the only way to offer load without busy callees. The same shape is used
# for kamailio.
((CALL_PROCS >= 1 && CALL_PROCS <= 200)) || { echo "run.sh: CALL_PROCS must be 1..200" >&2; exit 2; }
((HELD_CALLS >= 1 && HELD_CALLS <= 200)) || { echo "run.sh: HELD_CALLS must be 1..200" >&2; exit 2; }
ncallees=$((CALL_PROCS > HELD_CALLS ? CALL_PROCS : HELD_CALLS))

BENCH_NAME=run.sh BENCH_WORK=twinpbx-bench.XXXXXX
source "$here/lib.sh"

# ---------------------------------------------------------------- tools --

command -v sipp >/dev/null && command -v kamailio >/dev/null ||
	"$root/scripts/install-deps.sh" test bench
command -v perf >/dev/null || log "perf not found: no profile of twinpbx"
if [[ " $SERVERS " == *" twinpbx "* ]]; then
	(cd "$root" && go build -o "$work/twinpbx" ./firmware/twinpbx) || die "building twinpbx"
fi

# ----------------------------------------------------- /proc measurement --


# pss_kb PID: proportional set size of the process tree, in KiB.
pss_kb() {
	local sum=0 p v
	for p in $(tree "$1"); do
		v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null) || continue
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

# pss_parts PID: the process tree's PSS split as "anon file shmem", in KiB
# (smaps_rollup's Pss_Anon, Pss_File, Pss_Shmem): the Go heap and
# allocator are anonymous memory, twinpbx's store is a mapped file (bbolt),
# kamailio's tables are shared memory.
pss_parts() {
	local a=0 f=0 m=0 p pa pf pm
	for p in $(tree "$1"); do
		read -r pa pf pm < <(awk '/^Pss_Anon:/ {a = $2} /^Pss_File:/ {f = $2} /^Pss_Shmem:/ {m = $2}
			END {print a + 0, f + 0, m + 0}' /proc/"$p"/smaps_rollup 2>/dev/null) || continue
		a=$((a + pa)) f=$((f + pf)) m=$((m + pm))
	done
	echo "$a $f $m"
}

# pss_settled PID: PSS once it stopped moving (Go returns freed memory to
# the system in the background): two readings 2 s apart within 1%, 20 s
# at most.
pss_settled() {
	local a b deadline=$((SECONDS + 20))
	a=$(pss_kb "$1")
	while ((SECONDS < deadline)); do
		sleep 2
		b=$(pss_kb "$1")
		if ((b * 100 >= a * 99 && b * 100 <= a * 101)); then
			break
		fi
		a=$b
	done
	echo "$b"
}

# collect SERVER: for twinpbx, a garbage collection that returns the freed
# memory to the system (`twinpbx status --gc`), so that PSS counts what the
# process holds rather than garbage the runtime has not collected yet (its
# start-up garbage stays until the two-minute collection on a process
# that allocates little). kamailio has no collector: nothing to do.
collect() {
	[[ $1 == twinpbx ]] || return 0
	"$work/twinpbx" status --gc --data "$work/data" >/dev/null ||
		log "twinpbx status --gc failed: memory figures include garbage"
}

# ---------------------------------------------------------------- files --

{
	echo SEQUENTIAL
	for ((u = first_user; u < last_user; u++)); do
		echo "$u;[authentication username=$u password=bench-secret-$u]"
	done
} >"$work/users.csv"
# The memory figure registers the first 1,000 users as a warm-up (a Go
# heap sheds its start-up garbage only when it next collects), then the
# others, and divides the growth by their number.
warm=1000
{ head -n $((warm + 1)) "$work/users.csv"; } >"$work/users-warm.csv"
{ echo SEQUENTIAL; tail -n +$((warm + 2)) "$work/users.csv"; } >"$work/users-rest.csv"
{
	echo SEQUENTIAL
	for ((k = 0; k < ncallees; k++)); do
		u=$((last_user - k))
		echo "$u;[authentication username=$u password=bench-secret-$u]"
	done
} >"$work/callees.csv"
# callers-K.csv: the callers of process K (40 each), all calling callee K.
for ((k = 0; k < ncallees; k++)); do
	{
		echo SEQUENTIAL
		for ((j = 0; j < 40; j++)); do
			u=$((first_user + k * 40 + j))
			echo "$u;[authentication username=$u password=bench-secret-$u];$((last_user - k))"
		done
	} >"$work/callers-$k.csv"
done
{
	echo "node: {name: bench}"
	echo "sip: {listen: [\"udp:127.0.0.1:$pbx_port\"], rtp_ports: \"40000-49999\"}"
	echo "extensions:"
	for ((u = first_user; u <= last_user; u++)); do
		echo "  - {number: \"$u\", secret: \"bench-secret-$u\"}"
	done
} >"$work/twinpbx.yaml"
ncallers=$((last_user - first_user))

# -------------------------------------------------------------- servers --

server_pid=""
server_port=""

start_kamailio() { # CFG
	local name=$1
	port_free "$kam_port" || die "UDP port $kam_port is taken: $(ss -Hlunp "sport = :$kam_port")"
	mkdir -p "$work/kam-$name"
	taskset -c "$SERVER_CPU" kamailio -f "$here/kamailio/$name.cfg" -l "udp:127.0.0.1:$kam_port" \
		-x tlsf -m "$KAM_SHM_MB" -M 16 -n "$KAM_CHILDREN" -DD -E \
		-Y "$work/kam-$name" -P "$work/kam-$name/pid" >"$work/kamailio-$name.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	server_port=$kam_port
	wait_listening "$kam_port" || die "kamailio $name did not listen (see $work/kamailio-$name.log)"
}

start_twinpbx() {
	rm -rf "$work/data"
	port_free "$pbx_port" || die "UDP port $pbx_port is taken: $(ss -Hlunp "sport = :$pbx_port")"
	taskset -c "$SERVER_CPU" "$work/twinpbx" run --config "$work/twinpbx.yaml" --data "$work/data" \
		--log-level warn >"$work/twinpbx.log" 2>&1 &
	server_pid=$!
	pids+=("$server_pid")
	server_port=$pbx_port
	wait_listening "$pbx_port" || die "twinpbx did not listen (see $work/twinpbx.log)"
}


# wait_listening PORT: until the server (its pid) has a UDP socket bound to
# PORT (20 s).
wait_listening() {
	local deadline=$((SECONDS + 20))
	until ss -Hlunp "sport = :$1" | grep -qE "pid=($(tree "$server_pid" | paste -sd'|')),"; do
		kill -0 "$server_pid" 2>/dev/null || return 1
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	# Let the workers settle (kamailio forks its children after binding).
	sleep 1
}

stop_server() {
	stop "$server_pid"
	server_pid=""
}

# ----------------------------------------------------------------- sipp --

# sipp_run NAME SCENARIO CSV LOCALPORT MEDIAPORT RATE COUNT [ARGS...]: one
# sipp client run towards the server, bounded in time; the trace_stat file
# is $work/NAME.csv. Returns sipp's exit code.
sipp_run() {
	local name=$1 sf=$2 inf=$3 lport=$4 mport=$5 rate=$6 count=$7
	shift 7
	local limit=${limit_s:-$((count / (rate > 0 ? rate : 1) + 8 + ${hold_ms:-0} / 1000))}
	rm -f "$work/$name.csv" "$work/$name.err"
	timeout -k 5 $((limit + 5)) taskset -c "$SIPP_CPU" sipp "127.0.0.1:$server_port" \
		-sf "$here/sipp/$sf" -inf "$work/$inf" -i 127.0.0.1 -p "$lport" -mp "$mport" \
		-r "$rate" -m "$count" -l "${max_calls:-$((rate * 4 + 100 < 15000 ? rate * 4 + 100 : 15000))}" -nostdin -timeout "$limit" -timeout_error \
		-trace_stat -stf "$work/$name.csv" -fd 1 -trace_err -error_file "$work/$name.err" \
		"$@" >/dev/null 2>&1
}

# register_callees: set-up, not measured, so a busy machine gets three tries.
register_callees() {
	local try
	for try in 1 2 3; do
		sipp_run callee-reg register.xml callees.csv "$uas_port" "$uas_media" 20 "$ncallees" && return 0
		log "registering the callees, try $try: not clean"
	done
	die "registering the callees: $(tail -c 600 "$work/callee-reg.err" 2>/dev/null)"
}

# callers NAME RATE COUNT PROCS HOLD_MS: PROCS sipp callers in parallel,
# COUNT calls in all at RATE calls/s in all, each caller one call at a time.
# Sums their statistics into C (ok failed retrans unexpected achieved) and
# returns non-zero when any sipp did.
C=()
callers() {
	local name=$1 rate=$2 count=$3 n=$4 hold=$5 k rc=0 cp=()
	local per=$(((count + n - 1) / n))
	for ((k = 0; k < n; k++)); do
		limit_s=$((count / rate + 8 + hold / 1000)) max_calls=1 sipp_run "$name-$k" uac_call.xml "callers-$k.csv" \
			$((procs_port + k)) $((uac_media + 200 + 4 * k)) "$rate" "$per" \
			-rp $((1000 * n)) -d "$hold" -pause_msg_ign -auth_uri "$((last_user - k))@127.0.0.1:$server_port" &
		cp+=($!)
		pids+=($!)
	done
	for k in "${cp[@]}"; do
		wait "$k" || rc=1
		forget "$k"
	done
	local ok=0 failed=0 retrans=0 unexp=0 achieved=0 f
	for ((k = 0; k < n; k++)); do
		f=$work/$name-$k.csv
		[[ -s $f ]] || { rc=1; continue; }
		ok=$((ok + $(sstat "$f" 'SuccessfulCall(C)')))
		failed=$((failed + $(sstat "$f" 'FailedCall(C)')))
		retrans=$((retrans + $(sstat "$f" 'Retransmissions(C)')))
		unexp=$((unexp + $(sstat "$f" 'OutOfCallMsgs(C)') + $(sstat "$f" 'DeadCallMsgs(C)')))
		achieved=$(awk -v a="$achieved" -v b="$(sstat "$f" 'CallRate(C)')" 'BEGIN {printf "%.0f", a + b}')
	done
	C=("$ok" "$failed" "$retrans" "$unexp" "$achieved" "$((per * n))")
	return $rc
}

# uas_start COUNT: the callee, answering COUNT calls then exiting.
uas_pid=""
uas_start() {
	rm -f "$work/uas.csv" "$work/uas.err"
	taskset -c "$SIPP_CPU" sipp -sf "$here/sipp/uas_call.xml" -i 127.0.0.1 -p "$uas_port" -mp "$uas_media" \
		-m "$1" -nostdin -trace_stat -stf "$work/uas.csv" -fd 1 \
		-trace_err -error_file "$work/uas.err" >/dev/null 2>&1 &
	uas_pid=$!
	pids+=("$uas_pid")
}

uas_finish() {
	local deadline=$((SECONDS + 15))
	while kill -0 "$uas_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	stop "$uas_pid"
}

# --------------------------------------------------------------- a step --

# step KIND NAME RATE: one measured step (KIND reg or call). Sets R to
# (rate achieved load cpu_us_per_op clean failed retrans unexpected). It
# runs in this shell, not in $(...), so that the exit trap sees its sipp.
R=()
step() {
	local kind=$1 name=$2 rate=$3 count=$(($3 * STEP_SECS)) load t0 t1 rc=0
	((count <= ncallers)) || count=$ncallers
	[[ $kind == call ]] && count=$(((count + CALL_PROCS - 1) / CALL_PROCS * CALL_PROCS))
	quiet
	load=$LOAD
	[[ $kind == call ]] && uas_start "$count"
	t0=$(cpu_ticks "$server_pid")
	if [[ $kind == reg ]]; then
		sipp_run "$name" register.xml users.csv "$uac_port" "$uac_media" "$rate" "$count" || rc=$?
	else
		callers "$name" "$rate" "$count" "$CALL_PROCS" 0 || rc=$?
	fi
	t1=$(cpu_ticks "$server_pid")
	local ok failed retrans unexp uas_retrans=0 uas_failed=0 achieved
	if [[ $kind == reg ]]; then
		ok=$(sstat "$work/$name.csv" 'SuccessfulCall(C)')
		failed=$(sstat "$work/$name.csv" 'FailedCall(C)')
		retrans=$(sstat "$work/$name.csv" 'Retransmissions(C)')
		unexp=$(($(sstat "$work/$name.csv" 'OutOfCallMsgs(C)') + $(sstat "$work/$name.csv" 'DeadCallMsgs(C)')))
		achieved=$(sstat "$work/$name.csv" 'CallRate(C)')
	else
		ok=${C[0]} failed=${C[1]} retrans=${C[2]} unexp=${C[3]} achieved=${C[4]}
		uas_finish
		uas_retrans=$(sstat "$work/uas.csv" 'Retransmissions(C)')
		uas_failed=$(sstat "$work/uas.csv" 'FailedCall(C)')
		retrans=$((retrans + uas_retrans))
		failed=$((failed + uas_failed))
	fi
	local clean=no
	if ((rc == 0 && ok == count && failed == 0 && retrans == 0 && unexp == 0)); then clean=yes; fi
	local us
	us=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n; else print "-" }')
	log "$name: $rate/s x $count: ok $ok failed $failed retrans $retrans unexpected $unexp, cpu ${us} us/op, load $load -> $clean"
	if [[ $clean == no ]]; then
		local e
		e=$(cat "$work/$name.err" "$work/$name"-*.err "$work/uas.err" 2>/dev/null |
			grep -v -e '^The following events' -e 'Overload warning' | tr '\n' ' ' | cut -c1-400) || true
		log "$name: first error: ${e:-none logged (calls still open when sipp stopped?)}"
	fi
	R=("$rate" "$achieved" "$load" "$us" "$clean" "$failed" "$retrans" "$unexp")
}

# ramp KIND SERVER RATES...: rising rates until the first unclean step.
# Prints the table rows and sets best_rate/best_us.
best_rate=0
best_us=-
ramp() {
	local kind=$1 server=$2 r
	shift 2
	best_rate=0 best_us=-
	for r in "$@"; do
		step "$kind" "$kind-$server-$r" "$r"
		set -- "${R[@]}"
		echo "| $server | $1 | $2 | $4 | $5 | $6 | $7 | $8 | $3 |" >>"$work/ramp-$kind.md"
		if [[ $5 == yes ]]; then
			best_rate=$1 best_us=$4
		else
			break
		fi
	done
}

# ------------------------------------------------------- the benchmarks --

declare -A res

bench_register() { # SERVER
	local s=$1 before after load
	# Memory: every caller registers once, the first binding each.
	local nrest=$((ncallers - warm))
	quiet
	load=$LOAD
	sipp_run "warm-$s" register.xml users-warm.csv "$uac_port" "$uac_media" 500 "$warm" ||
		log "registering $warm users on $s was not clean (see $work/warm-$s.err)"
	collect "$s"
	before=$(pss_settled "$server_pid")
	local parts_before db_before=0 db_after=0 heap_before=0
	parts_before=$(pss_parts "$server_pid")
	if [[ $s == twinpbx ]]; then
		db_before=$(stat -c %s "$work/data/twinpbx.db")
		heap_before=$(pbx_process heap_live_bytes)
	fi
	sipp_run "mem-$s" register.xml users-rest.csv "$uac_port" "$uac_media" 1000 "$nrest" ||
		log "registering $nrest users on $s was not clean (see $work/mem-$s.err)"
	collect "$s"
	after=$(pss_settled "$server_pid")
	res[$s.reg.mem]=$(awk -v a="$after" -v b="$before" -v n="$nrest" 'BEGIN {printf "%.2f", (a - b) / n}')
	res[$s.reg.pss]="$before → $after KiB (load $load)"
	# Where it went. The mapped store file's share depends on which of its
	# pages the process has touched since bbolt last remapped it (it does
	# when the file grows, by doubling), so the file's own growth is given
	# beside it.
	res[$s.reg.parts]=$(awk -v b="$parts_before" -v a="$(pss_parts "$server_pid")" -v n="$nrest" 'BEGIN {
		split(b, x, " "); split(a, y, " ")
		printf "%.2f / %.2f / %.2f", (y[1] - x[1]) / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n }')
	if [[ $s == twinpbx ]]; then
		db_after=$(stat -c %s "$work/data/twinpbx.db")
		res[$s.reg.db]="$((db_before / 1024)) → $((db_after / 1024)) KiB"
		res[$s.reg.heap]=$(awk -v a="$(pbx_process heap_live_bytes)" -v b="$heap_before" -v n="$nrest" 'BEGIN {printf "%.2f", (a - b) / 1024 / n}')
	fi
	log "$s: PSS $before -> $after KiB for $nrest registrations after $warm"

	step reg "reg-$s-fixed" "$REG_FIXED"
	set -- "${R[@]}"
	res[$s.reg.fixed]="$4"
	res[$s.reg.fixedclean]="$5 (load $3)"

	if [[ $s == twinpbx ]] && command -v perf >/dev/null && [[ -z ${NO_PROFILE:-} ]]; then
		profile_register
	fi

	ramp reg "$s" $REG_RATES
	res[$s.reg.best]=$best_rate
	res[$s.reg.bestus]=$best_us
}

# profile_register: perf profile of twinpbx during a REGISTER step at the
# common rate; the flat top of it goes into the report.
profile_register() {
	# The whole tree: `twinpbx run` supervises a worker process that does
	# the work.
	perf record -F 999 -g -o "$work/perf.data" -p "$(tree "$server_pid" | paste -sd,)" >/dev/null 2>&1 &
	local perf_pid=$!
	pids+=("$perf_pid")
	step reg reg-twinpbx-profile "$REG_FIXED"
	kill -INT "$perf_pid" 2>/dev/null || true
	wait "$perf_pid" 2>/dev/null || true
	forget "$perf_pid"
	perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -25 >"$work/profile.txt" || true
	perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -40 >"$work/profile-children.txt" || true
}

bench_calls() { # SERVER
	local s=$1 load before after
	register_callees

	step call "call-$s-fixed" "$CALL_FIXED"
	set -- "${R[@]}"
	res[$s.call.fixed]="$4"
	res[$s.call.fixedclean]="$5 (load $3)"

	ramp call "$s" $CALL_RATES
	res[$s.call.best]=$best_rate
	res[$s.call.bestus]=$best_us

	# Memory: HELD_CALLS calls established at once (one caller process and
	# one callee each), held for HOLD_MS.
	quiet
	load=$LOAD
	if [[ $s == twinpbx ]]; then
		# The series' transactions live 32 s in sipgo: let them end, so
		# the live heap with the calls held counts the calls alone.
		sleep 35
		heap_before=$(pbx_process heap_live_bytes)
	fi
	before=$(pss_settled "$server_pid")
	uas_start "$HELD_CALLS"
	local cur=0
	callers "held-$s" "$HELD_CALLS" "$HELD_CALLS" "$HELD_CALLS" "$HOLD_MS" &
	local held=$!
	pids+=("$held")
	# Wait until the callee holds every call (its stat file counts them).
	local deadline=$((SECONDS + HOLD_MS / 1000 - 2))
	while ((SECONDS < deadline)); do
		cur=$(sstat "$work/uas.csv" 'CurrentCall' 2>/dev/null || echo 0)
		((cur >= HELD_CALLS)) && break
		sleep 0.5
	done
	after=$(pss_kb "$server_pid")
	if [[ $s == twinpbx ]]; then
		heap_after=$(pbx_process heap_live_bytes)
	fi
	wait "$held" || log "held calls on $s were not clean (see $work/held-$s-*.err)"
	forget "$held"
	uas_finish
	res[$s.call.mem]=$(awk -v a="$after" -v b="$before" -v n="$HELD_CALLS" 'BEGIN {printf "%.2f", (a - b) / n}')
	res[$s.call.pss]="$before → $after KiB with $cur calls up (load $load)"
	log "$s: PSS $before -> $after KiB with $cur of $HELD_CALLS calls held"
	if [[ $s == twinpbx ]]; then
		# A leak or memory kept for reuse? The Go heap the last GC found
		# alive, with the calls up and once every transaction of the
		# series has ended (sipgo keeps them 32 s).
		sleep 40
		res[$s.call.heapper]=$(awk -v a="$heap_after" -v b="$heap_before" -v n="$cur" 'BEGIN {printf "%.2f", n ? (a - b) / n / 1024 : 0}')
		res[$s.call.live]="$((heap_before / 1024)) → $((heap_after / 1024)) KiB with $cur calls up; $(($(pbx_process heap_live_bytes) / 1024)) KiB and $(pbx_process goroutines) goroutines 40 s after the last call; PSS then $(pss_kb "$server_pid") KiB"
		log "twinpbx: live heap ${res[$s.call.live]}"
	fi
}

# pbx_process FIELD: a field of the running twinpbx's process status.
pbx_process() {
	"$work/twinpbx" status --gc --data "$work/data" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["process"][sys.argv[1]])' "$1"
}

: >"$work/ramp-reg.md"
: >"$work/ramp-call.md"
started=$SECONDS

want() { [[ " $SERVERS " == *" $1 "* ]]; }
if [[ $only != calls ]]; then
	if want kamailio; then
		log "REGISTER: kamailio (registrar.cfg)"
		start_kamailio registrar
		bench_register kamailio
		stop_server
	fi
	if want twinpbx; then
		log "REGISTER: twinpbx"
		start_twinpbx
		bench_register twinpbx
		stop_server
	fi
fi
if [[ $only != register ]]; then
	if want kamailio; then
		log "calls: kamailio (proxy.cfg)"
		start_kamailio proxy
		bench_calls kamailio
		stop_server
	fi
	if want twinpbx; then
		log "calls: twinpbx"
		start_twinpbx
		bench_calls twinpbx
		stop_server
	fi
fi

# --------------------------------------------------------------- report --

v() { echo "${res[$1]:-n/a}"; }
{
	echo "## Results of $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Command: \`bench/run.sh $args\` (STEP_SECS=$STEP_SECS, REG_FIXED=$REG_FIXED, CALL_FIXED=$CALL_FIXED, HELD_CALLS=$HELD_CALLS); twinpbx at $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- pbx firmware || echo '+changes'); $((SECONDS - started)) s."
	echo
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernel $(uname -r); $(kamailio -v | head -1 | cut -d' ' -f2-3); $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1 | sed 's/\.$//'); $(go version | cut -d' ' -f3)."
	echo
	if [[ $only != calls ]]; then
		echo "### REGISTER with digest auth (401, then 200)"
		echo
		echo "| | kamailio registrar | twinpbx |"
		echo "|---|---|---|"
		echo "| CPU µs per REGISTER at $REG_FIXED/s | $(v kamailio.reg.fixed) | $(v twinpbx.reg.fixed) |"
		echo "| that step clean | $(v kamailio.reg.fixedclean) | $(v twinpbx.reg.fixedclean) |"
		echo "| highest clean rate (/s) | $(v kamailio.reg.best) | $(v twinpbx.reg.best) |"
		echo "| CPU µs per REGISTER at that rate | $(v kamailio.reg.bestus) | $(v twinpbx.reg.bestus) |"
		echo "| memory per registration (KiB) | $(v kamailio.reg.mem) | $(v twinpbx.reg.mem) |"
		echo "| PSS before and after $((ncallers - warm)) more registrations (after $warm) | $(v kamailio.reg.pss) | $(v twinpbx.reg.pss) |"
		echo "| of which anonymous / mapped files / shared memory (KiB per registration) | $(v kamailio.reg.parts) | $(v twinpbx.reg.parts) |"
		echo "| store file before and after | — | $(v twinpbx.reg.db) |"
		echo "| Go heap found alive (KiB per registration) | — | $(v twinpbx.reg.heap) |"
		echo
		echo "Rising rates (a step is clean with zero failed calls, retransmissions and unexpected messages):"
		echo
		echo "| server | target /s | achieved /s | CPU µs/op | clean | failed | retrans | unexpected | load |"
		echo "|---|---|---|---|---|---|---|---|---|"
		cat "$work/ramp-reg.md"
		echo
		if [[ -s $work/profile.txt ]]; then
			echo "twinpbx CPU profile during REGISTER at $REG_FIXED/s (perf, self time, top symbols):"
			echo
			echo '```'
			cat "$work/profile.txt"
			echo '```'
			echo
			echo "Including callees (top):"
			echo
			echo '```'
			cat "$work/profile-children.txt"
			echo '```'
			echo
		fi
	fi
	if [[ $only != register ]]; then
		echo "### Short calls with digest auth (INVITE 407 ACK, INVITE 100 180 200, ACK, BYE 200; no media)"
		echo
		echo "| | kamailio stateful proxy | twinpbx B2BUA |"
		echo "|---|---|---|"
		echo "| CPU µs per call at $CALL_FIXED/s | $(v kamailio.call.fixed) | $(v twinpbx.call.fixed) |"
		echo "| that step clean | $(v kamailio.call.fixedclean) | $(v twinpbx.call.fixedclean) |"
		echo "| highest clean rate (calls/s) | $(v kamailio.call.best) | $(v twinpbx.call.best) |"
		echo "| CPU µs per call at that rate | $(v kamailio.call.bestus) | $(v twinpbx.call.bestus) |"
		echo "| memory per held call (KiB) | $(v kamailio.call.mem) | $(v twinpbx.call.mem) |"
		echo "| PSS with $HELD_CALLS calls held | $(v kamailio.call.pss) | $(v twinpbx.call.pss) |"
		echo "| Go heap alive per held call (KiB; after a collection) | n/a | $(v twinpbx.call.heapper) |"
		echo "| Go heap alive before and with the calls held, and after the series | n/a | $(v twinpbx.call.live) |"
		echo
		echo "| server | target /s | achieved /s | CPU µs/op | clean | failed | retrans | unexpected | load |"
		echo "|---|---|---|---|---|---|---|---|---|"
		cat "$work/ramp-call.md"
		echo
	fi
} >"$out"
log "report written to $out"
cat "$out"
