# S3: versitygw, a real S3 gateway, run on 127.0.0.1 with its posix backend by
# the tests (registry/storage/s3/s3test starts it). Built from the Go module
# proxy into .cache/bin; the file target makes a second run do nothing.

VERSITYGW_VERSION := v1.8.0
VERSITYGW         := $(TOOLBIN)/versitygw-$(VERSITYGW_VERSION)

TEST_DEPS += $(VERSITYGW) $(TOOLBIN)/versitygw

$(VERSITYGW):
	@mkdir -p $(TOOLBIN)/tmp-versitygw
	GOBIN=$(TOOLBIN)/tmp-versitygw $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	mv $(TOOLBIN)/tmp-versitygw/versitygw $@ && rmdir $(TOOLBIN)/tmp-versitygw

$(TOOLBIN)/versitygw: $(VERSITYGW)
	ln -sf $(notdir $<) $@

# S3 throughput against minio-go's own PutObject/GetObject (ratios, medians).
BENCH_TARGETS += bench-s3

.PHONY: bench-s3
bench-s3: $(VERSITYGW) $(TOOLBIN)/versitygw
	./scripts/bench-s3.sh
