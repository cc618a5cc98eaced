# koipond — `make help` lists the targets.
GO      ?= go
BIN     ?= bin/koipond
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages where concurrency lives run under the race detector in `make test`.
PKGS    := ./...

.PHONY: help build test demo bench lint fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/koipond
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/koipond

# Load-sized tests (thousands of koi over real sockets) need more throughput
# than the race detector leaves; they skip themselves under -race and run in
# this second, non-race pass.
LOADTESTS := OverRealSockets

test: lint ## gofmt + vet, every test under the race detector (fuzz seed corpora included), then the load-sized tests
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 10m -run '$(LOADTESTS)' -v ./koi/

demo: build ## build and run the whole system on loopback (Ctrl-C stops it)
	./$(BIN) demo

bench: ## run the benchmarks and print their figures
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./metrics/ ./behaviors/ ./formations/ ./koi/

lint: ## gofmt (fails on any unformatted file) + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

FUZZTIME ?= 30s
fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzLoadSet$$' -fuzztime $(FUZZTIME) ./behaviors/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadFormation$$' -fuzztime $(FUZZTIME) ./formations/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./koi/
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./metrics/

clean: ## remove build output
	rm -rf bin
