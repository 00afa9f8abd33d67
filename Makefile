# modelctl: everything a developer or CI needs, from a clean checkout.
#   make demo   runs the whole workflow on the embedded defaults
#   make test   installs the pinned tools into .cache/ and runs every test
#
# Each area keeps its own targets in mk/<area>.mk and adds what its tests need
# to TEST_DEPS, so the pieces of the build never collide.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
ROOT    := $(CURDIR)
CACHE   := $(ROOT)/.cache
TOOLBIN := $(CACHE)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/modelctl/modelctl/internal/version.Version=$(VERSION)

# Tests find the tools here (internal/testenv); the variable lets a developer
# point at another cache.
export MODELCTL_TOOLS := $(TOOLBIN)

# Every Go source a binary may be built from (tests aside), found afresh on
# each run so a new package never leaves a stale binary behind.
GO_SOURCES := $(shell find . \( -path ./.cache -o -path ./bin -o -path ./data -o -path ./out -o -path ./e2e \) -prune -o -name '*.go' ! -name '*_test.go' -print 2>/dev/null)

# Filled in by mk/*.mk.
TEST_DEPS :=
TEST_TARGETS :=
BENCH_TARGETS :=
DEMO_DEPS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: build test vet fmt-check tidy-check unit race bench demo tools clean

build: bin/modelctl

bin/modelctl: $(GO_SOURCES) go.mod go.sum
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/modelctl

tools: $(TEST_DEPS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Windows is a first-class platform: every package, tests included, must
# also build and vet for it (only a few run there, under Wine).
vet:
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...

# go.mod says what the code imports, and nothing else.
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# Unit and integration tests of every package (e2e included; they build the
# binary themselves), then the race detector on the packages with concurrency.
unit: $(TEST_DEPS)
	$(GO) test -count=1 -timeout 20m ./...

race: $(TEST_DEPS)
	$(GO) test -count=1 -race -timeout 20m ./registry/... ./client/... ./quantize/ ./quantize/onnx/... ./signing/...

test: fmt-check tidy-check vet unit race $(TEST_TARGETS)

bench: bin/modelctl $(TEST_DEPS) $(BENCH_TARGETS)

demo: bin/modelctl $(DEMO_DEPS)
	./scripts/demo.sh

clean:
	rm -rf bin data out results
