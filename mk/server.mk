# The server side of the workflow (issue 14): e2e/server_test.go builds a
# small real service (e2e/testdata/appsvc) that loads models through
# onnxruntime, which needs cgo and so a C compiler; Debian's gcc is installed
# when missing. onnxruntime itself comes from mk/ort.mk.

NATIVE_CC := /usr/bin/gcc

TEST_DEPS += $(NATIVE_CC)

$(NATIVE_CC):
	test -e $@ || (apt-get update && apt-get install -y gcc libc6-dev)
