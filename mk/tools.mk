# Pinned third-party tools for tests and benchmarks, built from the Go module
# proxy into .cache/bin. Each target is a file, so a second run does nothing.

ORAS_VERSION         := v1.3.6
DISTRIBUTION_VERSION := v3.1.2
CONFORMANCE_VERSION  := v0.0.0-20260831232431-97274622c111

ORAS         := $(TOOLBIN)/oras-$(ORAS_VERSION)
DISTRIBUTION := $(TOOLBIN)/registry-$(DISTRIBUTION_VERSION)
CONFORMANCE  := $(TOOLBIN)/conformance-$(CONFORMANCE_VERSION).test

TEST_DEPS += $(ORAS) $(DISTRIBUTION) $(CONFORMANCE)

$(ORAS):
	@mkdir -p $(TOOLBIN)/tmp-oras
	GOBIN=$(TOOLBIN)/tmp-oras $(GO) install oras.land/oras/cmd/oras@$(ORAS_VERSION)
	mv $(TOOLBIN)/tmp-oras/oras $@ && rmdir $(TOOLBIN)/tmp-oras
	ln -sf $(notdir $@) $(TOOLBIN)/oras

$(DISTRIBUTION):
	@mkdir -p $(TOOLBIN)/tmp-dist
	GOBIN=$(TOOLBIN)/tmp-dist $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(DISTRIBUTION_VERSION)
	mv $(TOOLBIN)/tmp-dist/registry $@ && rmdir $(TOOLBIN)/tmp-dist
	ln -sf $(notdir $@) $(TOOLBIN)/registry

# The conformance suite is a Go test binary; build it inside its own module so
# its go.sum pins its dependencies.
$(CONFORMANCE):
	@mkdir -p $(TOOLBIN)
	$(GO) mod download github.com/opencontainers/distribution-spec/conformance@$(CONFORMANCE_VERSION)
	cd "$$($(GO) mod download -json github.com/opencontainers/distribution-spec/conformance@$(CONFORMANCE_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && \
		GOFLAGS=-mod=mod $(GO) test -c -o $@.tmp . && mv $@.tmp $@
	ln -sf $(notdir $@) $(TOOLBIN)/conformance.test
