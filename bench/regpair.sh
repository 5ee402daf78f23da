#!/usr/bin/env bash
# regpair.sh compares two REGISTER servers side by side: CPU time and
# context switches per authenticated REGISTER (401, then 200) at one rate,
# the two servers alternated PAIRS times so that a machine whose speed
# drifts treats both alike. Each is two revisions of twinpbx (did a change
# help?) or kamailio as run.sh runs it (kamailio/registrar.cfg) and a
# revision: run.sh measures one server after the other, which a machine
# that slows down for a minute can tilt either way.
#
# Usage: bench/regpair.sh A B [PAIRS]   (git revisions, or "kamailio";
# default 5 pairs)
# Environment: RATE (500), COUNT (5000), SERVER_CPU (0), SIPP_CPU (1),
# LOAD_MAX (0.8), LOAD_WAIT (120). Every process it starts is stopped on
# exit, also on failure or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
(($# >= 2)) || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
rev_a=$1 rev_b=$2 pairs=${3:-5}
: "${RATE:=500}" "${COUNT:=5000}" "${SERVER_CPU:=0}" "${SIPP_CPU:=1}"
: "${LOAD_MAX:=0.8}" "${LOAD_WAIT:=120}"
port=25570 uac_port=25590 users=10000

BENCH_NAME=regpair.sh BENCH_WORK=twinpbx-regpair.XXXXXX
source "$here/lib.sh"
command -v sipp >/dev/null && command -v kamailio >/dev/null || "$root/scripts/install-deps.sh" test bench

for r in a b; do
	rev=$rev_a
	[[ $r == b ]] && rev=$rev_b
	[[ $rev == kamailio ]] && continue
	mkdir -p "$work/src-$r"
	git -C "$root" archive "$rev" | tar -x -C "$work/src-$r"
	(cd "$work/src-$r" && go build -o "$work/twinpbx-$r" ./firmware/twinpbx) || die "building $rev"
done
{
	echo SEQUENTIAL
	for ((u = 10000; u < 10000 + users; u++)); do
		echo "$u;[authentication username=$u password=bench-secret-$u]"
	done
} >"$work/users.csv"
{
	echo "node: {name: bench}"
	echo "sip: {listen: [\"udp:127.0.0.1:$port\"], rtp_ports: \"40000-49999\"}"
	echo "extensions:"
	for ((u = 10000; u < 10000 + users; u++)); do
		echo "  - {number: \"$u\", secret: \"bench-secret-$u\"}"
	done
} >"$work/twinpbx.yaml"

# ctxsw PID: voluntary and involuntary context switches of the process
# tree, summed over its threads.
ctxsw() {
	local sum=0 p v
	for p in $(tree "$1"); do
		v=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
		sum=$((sum + v))
	done
	echo "$sum"
}

register() { # RATE COUNT
	timeout -k 5 $(($2 / $1 + 30)) taskset -c "$SIPP_CPU" sipp "127.0.0.1:$port" -sf "$here/sipp/register.xml" \
		-inf "$work/users.csv" -i 127.0.0.1 -p "$uac_port" -r "$1" -m "$2" -nostdin -timeout $(($2 / $1 + 20)) \
		>/dev/null 2>&1
}

# measure A|B: one warm-up of every user, then COUNT REGISTERs at RATE.
measure() {
	local bin=$work/twinpbx-$1 pid t0 t1 c0 c1 rev=$rev_a
	[[ $1 == b ]] && rev=$rev_b
	rm -rf "$work/data" "$work/kam"
	port_free "$port" || die "UDP port $port is taken"
	if [[ $rev == kamailio ]]; then
		mkdir -p "$work/kam"
		# As run.sh starts it.
		taskset -c "$SERVER_CPU" kamailio -f "$here/kamailio/registrar.cfg" -l "udp:127.0.0.1:$port" \
			-x tlsf -m 1024 -M 16 -n 4 -DD -E -Y "$work/kam" -P "$work/kam/pid" >"$work/log-$1" 2>&1 &
	else
		taskset -c "$SERVER_CPU" "$bin" run --config "$work/twinpbx.yaml" --data "$work/data" --log-level warn \
			>"$work/log-$1" 2>&1 &
	fi
	pid=$!
	pids+=("$pid")
	for _ in $(seq 200); do ss -Hlun "sport = :$port" | grep -q . && break; sleep 0.1; done
	sleep 1 # kamailio forks its workers after binding
	register 2000 "$users" || die "warming $1 up"
	quiet
	t0=$(cpu_ticks "$pid") c0=$(ctxsw "$pid")
	register "$RATE" "$COUNT" || die "measuring $1"
	t1=$(cpu_ticks "$pid") c1=$(ctxsw "$pid")
	stop "$pid"
	printf '%s\t%d\t%.2f\t%s\n' "$1" $(((t1 - t0) * 1000000 / hz / COUNT)) \
		"$(awk -v c=$((c1 - c0)) -v n="$COUNT" 'BEGIN {print c / n}')" "$LOAD"
}

name() { if [[ $1 == kamailio ]]; then kamailio -v | head -1 | cut -d' ' -f2-3; else echo "$1 ($(git -C "$root" rev-parse --short "$1"))"; fi; }
echo "# A = $(name "$rev_a"), B = $(name "$rev_b"); $COUNT REGISTERs at $RATE/s"
echo -e "binary\tCPU µs/REGISTER\tcontext switches/REGISTER\tload"
for ((i = 0; i < pairs; i++)); do
	measure a
	measure b
done
