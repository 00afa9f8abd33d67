# The transfer client (push/pull): its tests need oras and CNCF distribution
# (mk/tools.mk) and python3-onnx (mk/onnx.mk), already in TEST_DEPS. The
# benchmark compares modelctl push/pull against `modelctl serve` with oras
# against CNCF distribution on a 2 GiB model (override with
# BENCH_TRANSFER_SIZE / BENCH_TRANSFER_RUNS).

BENCH_TRANSFER_SIZE ?= 2GiB
BENCH_TRANSFER_RUNS ?= 3

BENCH_TARGETS += bench-transfer

.PHONY: bench-transfer fuzz-client

bench-transfer: $(ORAS) $(DISTRIBUTION)
	./scripts/bench-transfer.sh $(BENCH_TRANSFER_SIZE) $(BENCH_TRANSFER_RUNS)

# A short fuzzing session of the artifact parser and the reference parser
# (the committed corpora run in every `go test`).
fuzz-client:
	$(GO) test -run XXX -fuzz FuzzParseManifest -fuzztime 30s ./manifests
	$(GO) test -run XXX -fuzz FuzzValidatePath -fuzztime 30s ./manifests
	$(GO) test -run XXX -fuzz FuzzParseReference -fuzztime 30s ./client
