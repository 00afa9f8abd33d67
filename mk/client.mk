# The transfer client (push/pull): its tests need oras and CNCF distribution
# (mk/tools.mk) and python3-onnx (mk/onnx.mk), already in TEST_DEPS. The
# benchmark compares modelctl push/pull against `modelctl serve` with oras
# against CNCF distribution on a 2 GiB model (override with
# BENCH_TRANSFER_SIZE / BENCH_TRANSFER_RUNS).

BENCH_TRANSFER_SIZE ?= 2GiB
BENCH_TRANSFER_RUNS ?= 3

BENCH_TARGETS += bench-transfer

.PHONY: bench-transfer

bench-transfer: $(ORAS) $(DISTRIBUTION)
	./scripts/bench-transfer.sh $(BENCH_TRANSFER_SIZE) $(BENCH_TRANSFER_RUNS)

# A 2 GiB GGUF against a 2 GiB ONNX model, pushed and pulled the same way
# (MODELCTL_BENCH_FORMAT_SIZE=bytes to change the size).
BENCH_TARGETS += bench-formats
.PHONY: bench-formats
bench-formats: $(TEST_DEPS)
	$(GO) test -count=1 -run '^$$' -bench 'PushPullFormats$$' -benchtime 1x -timeout 30m -v ./e2e/ | grep -E 'push of|pull of|ok|FAIL'
