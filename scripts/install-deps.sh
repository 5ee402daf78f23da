#!/usr/bin/env bash
# install-deps.sh installs what twinpbx's tests need on Debian 12, and
# nothing when everything is already there. Safe to run again and again,
# as root without a terminal (CI) or as a user with sudo.
#
# Usage: scripts/install-deps.sh [GROUP...]
#   test   (default) SIP peers and tools for unit and end-to-end tests
#   vm     QEMU and a Debian kernel for the image's VM tests
#   isdn   libpri, the live ISDN peer for the Q.931 tests
#   bench  kamailio and keepalived, the reference servers of the benchmarks
#   all    every group above
set -euo pipefail

# Pinned so that CI and every developer see the same checks; 0.8.2
# (2026.2.2) builds and runs with Go 1.26.
STATICCHECK_VERSION=v0.8.2

declare -A groups=(
	[test]="sip-tester baresip tshark sox tmux socat iproute2 nftables dnsmasq"
	[vm]="qemu-system-x86 linux-image-6.1.0-56-amd64 xz-utils cpio e2fsprogs fdisk dosfstools mtools systemd-boot-efi binutils ovmf sbsigntool osslsigncode openssl"
	[isdn]="libpri-dev gcc libc6-dev"
	[bench]="kamailio keepalived"
)

log() { printf 'install-deps: %s\n' "$*"; }

wanted=()
[[ $# -eq 0 ]] && set -- test
for g in "$@"; do
	if [[ $g == all ]]; then
		for k in test vm isdn bench; do wanted+=(${groups[$k]}); done
		continue
	fi
	if [[ -z ${groups[$g]+x} ]]; then
		echo "install-deps: unknown group '$g' (test, vm, isdn, bench, all)" >&2
		exit 2
	fi
	wanted+=(${groups[$g]})
done

installed() {
	[[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]
}

missing=()
for p in "${wanted[@]}"; do
	installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	log "Debian packages present: ${wanted[*]}"
else
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
			exit 1
		fi
		sudo=(sudo -n)
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	# --no-install-recommends keeps baresip and tshark from pulling a desktop.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" </dev/null
	log "installed: ${missing[*]}"
fi

# staticcheck (see STATICCHECK_VERSION above).
if ! command -v go >/dev/null; then
	echo "install-deps: go is not on PATH; install Go 1.26 first" >&2
	exit 1
fi
bindir=$(go env GOBIN)
[[ -n $bindir ]] || bindir="$(go env GOPATH)/bin"
want=${STATICCHECK_VERSION#v}
if [[ -x $bindir/staticcheck ]] && "$bindir/staticcheck" -version 2>/dev/null | grep -qF "($want)"; then
	log "staticcheck $STATICCHECK_VERSION present in $bindir"
else
	log "installing staticcheck $STATICCHECK_VERSION into $bindir"
	GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	log "installed: $("$bindir/staticcheck" -version)"
fi
