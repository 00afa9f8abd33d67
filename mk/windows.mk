# Windows: bin/modelctl.exe cross-built for windows/amd64. cgo is on (the
# onnxruntime part of bench loads onnxruntime.dll through it), with Debian's
# mingw-w64 cross compiler, installed once by apt. CI builds it through
# TEST_TARGETS; `make windows` builds it alone. The onnxruntime DLLs that go
# next to it come from `make ort-windows` (mk/ort.mk).

MINGW_CC    := /usr/bin/x86_64-w64-mingw32-gcc
WINDOWS_EXE := bin/modelctl.exe

TEST_TARGETS += windows

.PHONY: windows

windows: $(WINDOWS_EXE)

$(MINGW_CC):
	test -e $@ || (apt-get update && apt-get install -y gcc-mingw-w64-x86-64)
	test -e $@

# -w: onnxruntime's header redefines SAL macros that mingw's sal.h defines
# too; the warnings are noise.
# Rebuilt when any Go source changes (GO_SOURCES, the list bin/modelctl
# uses too).
$(WINDOWS_EXE): $(MINGW_CC) $(GO_SOURCES) go.mod go.sum
	@mkdir -p bin
	GOOS=windows GOARCH=amd64 CGO_ENABLED=1 CC=$(MINGW_CC) CGO_CFLAGS='-O2 -w' \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@.tmp ./cmd/modelctl
	mv $@.tmp $@
