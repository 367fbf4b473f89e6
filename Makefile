# Convenience targets; the README's commands work without make.
GO ?= go
BPF2GO_CFLAGS ?= -O2 -g -Wall -Werror

.PHONY: all build generate lint test test-short fuzz-smoke vulncheck bench

all: build

build:
	$(GO) build ./...

# Regenerate the eBPF objects (needs clang llvm libbpf-dev).
generate:
	BPF2GO_CFLAGS="$(BPF2GO_CFLAGS)" $(GO) generate ./ila/datapath/...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) tool staticcheck ./...

# The README's test command (installs what it needs; run as root).
test:
	./test/run.sh

test-short:
	$(GO) test -short ./...

# 10 s per fuzz target of every package (FUZZTIME=10m for a longer run).
FUZZTIME ?= 10s
fuzz-smoke:
	./test/fuzz-smoke.sh $(FUZZTIME)

# govulncheck against the Go vulnerability database (VULNDB=file:///path
# for a local copy; VULNCHECK_REQUIRED=1 fails when it cannot be reached).
vulncheck:
	./test/vulncheck.sh

bench:
	./bench/run
