# Fuzzing: every Go fuzz target in the tree (any `func FuzzXxx` in a
# *_test.go file, found afresh on each run so new targets join without
# editing this file) runs for FUZZTIME. Each committed corpus under
# <package>/testdata/fuzz also runs in every plain `go test`. A crash makes
# the target fail; go writes the input to testdata/fuzz/<Target>/, and it is
# committed with the fix as a regression test. The report (target, package,
# result, executions) goes to $(CACHE)/fuzz-report.txt.

FUZZTIME    ?= 6s
FUZZ_REPORT := $(CACHE)/fuzz-report.txt

TEST_TARGETS += fuzz

.PHONY: fuzz

fuzz:
	@mkdir -p $(CACHE); : > $(FUZZ_REPORT); fail=0; \
	for f in $$(git ls-files --cached --others --exclude-standard '*_test.go' | sort -u); do \
	  dir=./$$(dirname $$f); \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*testing\.F).*/\1/p' $$f); do \
	    log=$$(mktemp); status=ok; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$dir >$$log 2>&1 || { status=FAIL; fail=1; }; \
	    execs=$$(grep -o 'execs: [0-9]*' $$log | tail -1 | cut -d' ' -f2 || true); \
	    found=$$(grep -o 'total: [0-9]*' $$log | tail -1 | cut -d' ' -f2 || true); \
	    printf '%-26s %-22s %-4s execs=%-9s corpus=%s\n' $$t $$dir $$status "$${execs:-0}" "$${found:-0}" | tee -a $(FUZZ_REPORT); \
	    if [ $$status = FAIL ]; then grep -v '^fuzz: elapsed' $$log | tail -40; fi; \
	    rm -f $$log; \
	  done; \
	done; \
	exit $$fail

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
