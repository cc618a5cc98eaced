# koipond — `make help` lists the targets.
GO      ?= go
BIN     ?= bin/koipond
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages where concurrency lives run under the race detector in `make test`.
PKGS    := ./...

.PHONY: help build test test-distributed demo bench lint fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/koipond
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/koipond

# Load-sized tests (thousands of koi over real sockets; the examples'
# frequencies and fan-out against their real servers: MQTT, Socket.IO,
# graphql-ws) need more throughput than the race detector leaves; they
# skip themselves under -race and run in
# this second, non-race pass.
LOADTESTS := OverRealSockets
EXAMPLETESTS := ^Test[A-Za-z]*Example$$

test: lint ## gofmt + vet, every test under the race detector (fuzz seed corpora included), then the load-sized tests
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 10m -run '$(LOADTESTS)' -v ./koi/
	$(GO) test -count=1 -timeout 10m -run '$(EXAMPLETESTS)' -v ./cmd/koipond/

# The multi-process fault test (deploy/faulttest): a 3-node NATS cluster, the
# keeper, three schools and pond as separate processes on 127.0.0.1, hurt on
# purpose (kill -9, a dead NATS node, a cut link); prints a step table.
test-distributed: ## multi-process fault test on loopback (NATS cluster, keeper, schools, pond; a few minutes)
	$(GO) build -o bin/faulttest ./deploy/faulttest
	GO=$(GO) ./bin/faulttest

demo: build ## build and run the whole system on loopback (Ctrl-C stops it)
	./$(BIN) demo

bench: ## run the in-process benchmarks (pond/bench.sh and school/bench.sh measure across processes)
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./metrics/ ./behaviors/ ./formations/ ./koi/ ./pond/

lint: ## gofmt (fails on any unformatted file) + go vet + go.mod/go.sum tidy
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if ! out=$$($(GO) mod tidy -diff 2>&1); then echo "$$out"; \
	  echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result"; exit 1; fi

FUZZTIME ?= 30s
# package:target pairs; `make fuzz` runs each for FUZZTIME (their seed
# corpora already run in `make test`).
FUZZ := behaviors:FuzzLoadSet formations:FuzzLoadFormation behaviors:FuzzClassify behaviors:FuzzClassifyType behaviors:FuzzFrameMatch behaviors:FuzzMQTTDecode behaviors:FuzzSocketIODecode behaviors:FuzzFraming behaviors:FuzzScanTopLevel \
	metrics:FuzzUnmarshal wire:FuzzDecode pond:FuzzParseArgs pond:FuzzAPI pond:FuzzHandleFrame \
	warehouse:FuzzRowParsers warehouse:FuzzTimestamp
fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	@set -e; for pt in $(FUZZ); do p=$${pt%%:*}; t=$${pt##*:}; \
	  echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$p/; done

clean: ## remove build output
	rm -rf bin
