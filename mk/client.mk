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
