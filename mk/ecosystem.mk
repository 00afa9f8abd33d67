# Pulling what the rest of the ecosystem pushes (docs/ecosystem.md): the
# round-trip tests (e2e/ecosystem_test.go) use oras (mk/tools.mk), Debian's
# skopeo, and crane from the Go module proxy.

CRANE_VERSION := v0.22.1
CRANE  := $(TOOLBIN)/crane-$(CRANE_VERSION)
SKOPEO := /usr/bin/skopeo

TEST_DEPS += $(CRANE) $(SKOPEO)
BENCH_TARGETS += bench-unpack

.PHONY: bench-unpack

$(CRANE):
	@mkdir -p $(TOOLBIN)/tmp-crane
	GOBIN=$(TOOLBIN)/tmp-crane $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)
	mv $(TOOLBIN)/tmp-crane/crane $@ && rmdir $(TOOLBIN)/tmp-crane
	ln -sf $(notdir $@) $(TOOLBIN)/crane

$(SKOPEO):
	test -e $@ || (apt-get update && apt-get install -y skopeo)
	test -e $@

# Unpacking a 1 GiB tar+gzip model layer against tar xzf of the same file.
bench-unpack:
	./scripts/bench-unpack.sh
