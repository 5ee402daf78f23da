#!/usr/bin/env bash
# test.sh is the one test command of twinpbx (make test, CI): it installs
# the test dependencies, then checks formatting, vet, staticcheck and runs
# every package's tests, end-to-end tests against the real binary included.
# Set TWINPBX_E2E=off to skip the end-to-end tests on a machine without
# sipp and baresip.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh test vm isdn

bindir=$(go env GOBIN)
[[ -n $bindir ]] || bindir="$(go env GOPATH)/bin"

step "gofmt"
unformatted=$(git ls-files -z --cached --others --exclude-standard '*.go' | xargs -0 -r gofmt -l)
if [[ -n $unformatted ]]; then
	echo "gofmt: these files need formatting (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
"$bindir/staticcheck" ./...

step "go test"
# 2 cores: the unit tests take a few minutes, the e2e package about two;
# the timeout only stops a hung test from holding CI for long.
# The isdn group is installed above, so the libpri interop test must run.
TWINPBX_LIBPRI=require go test -timeout 15m -count=1 ./...

step "all checks passed"
