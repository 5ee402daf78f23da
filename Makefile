# twinpbx developer entry points. CI runs `make test` (see .ci/run).

GO ?= go
OUT ?= out
DATA ?= ./twinpbx-data

.PHONY: all build test e2e deps run clean

all: build

## build: the twinpbx binary into $(OUT)/
build:
	$(GO) build -o $(OUT)/twinpbx ./firmware/twinpbx

## test: every check CI runs (deps, gofmt, vet, staticcheck, all tests)
test:
	scripts/test.sh

## e2e: only the end-to-end tests against the real binary
e2e:
	$(GO) test -count=1 -timeout 10m -v ./e2e/

## deps: install the Debian packages and tools the tests need
deps:
	scripts/install-deps.sh

## run: the PBX on this machine, data in $(DATA)
run:
	$(GO) run ./firmware/twinpbx run --data $(DATA)

clean:
	rm -rf $(OUT)

## bench: twinpbx against kamailio (REGISTER with auth, short calls), report in bench/results.md
.PHONY: bench
bench:
	bench/run.sh

## demo-failover: (root) run a twin pair in network namespaces, SIGKILL the active, show what a phone saw
.PHONY: demo-failover
demo-failover:
	$(GO) test -count=1 -v -run 'TestDecisionTable/active_SIGKILL' ./firmware/twin/nstest/
