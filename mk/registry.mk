# The registry's own benchmark: server CPU per GiB pushed and pulled, and
# peak RSS, against CNCF distribution in the same run (docs/registry.md).

.PHONY: bench-registry
BENCH_TARGETS += bench-registry

bench-registry: bin/modelctl $(DISTRIBUTION)
	scripts/bench-registry.sh

# The load-and-fault test of docs/security.md at full size: 16 clients
# pushing and pulling 64 MiB models for 2 minutes on the filesystem and on
# S3, with slow bodies and bad requests, the server killed with SIGKILL
# half-way (`make test` runs a 12-second version). Reports go to
# $(CACHE)/load-report.json.
.PHONY: bench-load
BENCH_TARGETS += bench-load

bench-load: bin/modelctl $(VERSITYGW) $(TOOLBIN)/versitygw
	@mkdir -p $(CACHE); rm -f $(CACHE)/load-report.json
	MODELCTL_LOAD=full MODELCTL_LOAD_REPORT=$(CACHE)/load-report.json $(GO) test -count=1 -timeout 30m -run TestLoadAndFault -v ./e2e/
