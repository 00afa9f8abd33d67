# make demo (scripts/demo.sh): the whole workflow in one command on a fresh
# machine. Bench needs onnxruntime (mk/ort.mk) and a modelctl built with cgo,
# so a C compiler; the demo also runs onnx.checker on the model it installed
# (python3-onnx, mk/onnx.mk). Each piece is installed only when missing
# (npm too: mk/ort.mk fetches onnxruntime with `npm pack`).
#
# The paths of the other fragments are expanded in the recipe, at run time:
# fragments are included in name order, and ORT_LIB/ONNX_PY are not yet
# defined when this one is read.

DEMO_DEPS += demo-tools

.PHONY: demo-tools

demo-tools: bin/modelctl
	@command -v gcc >/dev/null || (apt-get update && apt-get install -y gcc libc6-dev)
	@command -v npm >/dev/null || (apt-get update && apt-get install -y npm)
	@$(MAKE) --no-print-directory $(ORT_LIB) $(ONNX_PY)
	@$(GO) version -m bin/modelctl | grep -q 'CGO_ENABLED=1' || { echo "rebuilding bin/modelctl with cgo (bench needs it)"; rm -f bin/modelctl; $(MAKE) --no-print-directory bin/modelctl; }

# Rollback latency with two 2 GiB models: rollback + sync --update + verify
# with the previous model in the local cache, medians of 3 runs (goal < 2 s).
BENCH_TARGETS += bench-rollback

.PHONY: bench-rollback

bench-rollback: bin/modelctl
	./scripts/bench-rollback.sh
