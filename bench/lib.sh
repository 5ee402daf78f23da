# lib.sh: what bench/run.sh and bench/dispatch.sh share. Source it with
# BENCH_NAME (for the log lines) and BENCH_WORK (the work folder's name
# pattern under /tmp) set; it makes the work folder and stops, on exit,
# every process whose pid is in pids (with its descendants).

log() { printf '%s %s: %s\n' "$(date +%T)" "$BENCH_NAME" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# tree PID: PID and all its descendants.
tree() {
	local p c
	for p in "$@"; do
		echo "$p"
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
	done
}

work=$(mktemp -d "/tmp/$BENCH_WORK")
pids=()
cleanup() {
	local rc=$? p all=()
	# Whole trees: a caller subshell may have sipp children of its own.
	for p in "${pids[@]}"; do
		all+=($(tree "$p"))
	done
	for p in "${all[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${all[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	if ((rc != 0)) || [[ -n ${KEEP_WORK:-} ]]; then
		log "kept the logs in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# forget PID: a process we stopped ourselves needs no cleanup any more.
forget() {
	local p keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# stop PID...: end the processes, politely first.
stop() {
	local p
	for p in "$@"; do
		kill "$p" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		forget "$p"
	done
}

# cpu_ticks PID: user+system clock ticks of the process tree.
cpu_ticks() {
	local sum=0 p f
	for p in $(tree "$1"); do
		# Fields after the ")" that closes the command name: utime is the
		# 12th, stime the 13th.
		f=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null) || continue
		set -- $f
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}
hz=$(getconf CLK_TCK)

load1() { cut -d' ' -f1 /proc/loadavg; }

# quiet: wait until the machine is quiet and set LOAD to the 1-minute load
# average. All waits of a run together take at most LOAD_WAIT seconds;
# after that every step is measured at once, its load recorded.
LOAD=""
waited=0
quiet() {
	local t0=$SECONDS
	while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN {exit !(l >= m)}'; do
		if ((waited + SECONDS - t0 >= LOAD_WAIT)); then
			((waited >= LOAD_WAIT)) ||
				log "load $(load1) still above $LOAD_MAX after ${LOAD_WAIT}s of waiting; measuring from now on without waiting"
			break
		fi
		sleep 2
	done
	waited=$((waited + SECONDS - t0))
	LOAD=$(load1)
}

# sstat FILE COLUMN: the last (cumulative) value of a sipp -trace_stat column.
sstat() {
	awk -F';' -v col="$2" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
		{ last = $c }
		END { if (c == "") { print "no column " col > "/dev/stderr"; exit 1 }; print last + 0 }' "$1"
}

# port_free PORT: nothing listens on UDP PORT (a stray server would be
# measured instead of ours).
port_free() { ! ss -Hlun "sport = :$1" | grep -q .; }
