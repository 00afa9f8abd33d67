# Fuzzing: every Go fuzz target in the tree (any `func FuzzXxx` in a
# *_test.go file, found afresh on each run so new targets join without
# editing this file) runs for FUZZTIME. Each committed corpus under
# <package>/testdata/fuzz also runs in every plain `go test`. A crash makes
# the target fail; go writes the input to testdata/fuzz/<Target>/, and it is
# committed with the fix as a regression test. The report (target, package,
# result, executions) goes to $(CACHE)/fuzz-report.txt. scripts/fuzz.sh
# runs them; it tries a target once more only when Go's coordinator hit its
# known deadline race (go.dev/issue/75804) and no input failed.

FUZZTIME    ?= 6s
FUZZ_REPORT := $(CACHE)/fuzz-report.txt

TEST_TARGETS += fuzz

.PHONY: fuzz

fuzz:
	@mkdir -p $(CACHE); FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh $(FUZZ_REPORT)

# sigstore-go's verifier, built from its own module (signing/sigstorecheck,
# pinned by its go.sum) so the main module does not depend on it: the
# signing tests check with it that `modelctl sign` writes bundles Sigstore
# tooling verifies.
SIGSTORE_GO_VERSION := v1.3.0
SIGSTORE_VERIFY     := $(TOOLBIN)/sigstore-verify-$(SIGSTORE_GO_VERSION)

TEST_DEPS += $(SIGSTORE_VERIFY)

$(SIGSTORE_VERIFY): signing/sigstorecheck/go.mod signing/sigstorecheck/go.sum signing/sigstorecheck/main.go
	@mkdir -p $(TOOLBIN)
	cd signing/sigstorecheck && $(GO) build -mod=readonly -trimpath -o $@.tmp . && mv $@.tmp $@
	ln -sf $(notdir $@) $(TOOLBIN)/sigstore-verify
