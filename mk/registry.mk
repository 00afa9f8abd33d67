# The registry's own benchmark: server CPU per GiB pushed and pulled, and
# peak RSS, against CNCF distribution in the same run (docs/registry.md).

.PHONY: bench-registry
BENCH_TARGETS += bench-registry

bench-registry: bin/modelctl $(DISTRIBUTION)
	scripts/bench-registry.sh
