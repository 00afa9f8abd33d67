# Release archives: `make dist` writes into dist/
#   modelctl-VERSION-windows-amd64.zip     modelctl.exe, onnxruntime.dll, DirectML.dll, LICENSES/
#   modelctl-VERSION-linux-amd64.tar.gz    modelctl, libonnxruntime.so.1, LICENSES/
#   SHA256SUMS
# Each binary sits next to its onnxruntime library, where `modelctl bench`
# and `doctor` find it without flags. The archives depend only on the
# commit: binaries built with -trimpath and no link timestamps, entries
# sorted, one modification time (the commit's), fixed owners and modes
# (scripts/distpack), so two builds of one commit are byte-identical.
# After packing, the Linux archive is unpacked outside the checkout and its
# modelctl must load the bundled library by itself.

DIST_DIR     := $(ROOT)/dist
DIST_EPOCH   := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DIST_WIN     := $(DIST_DIR)/modelctl-$(VERSION)-windows-amd64.zip
DIST_LINUX   := $(DIST_DIR)/modelctl-$(VERSION)-linux-amd64.tar.gz
DIST_SUMS    := $(DIST_DIR)/SHA256SUMS
DIST_LINUX_BIN := $(DIST_DIR)/build/linux-amd64/modelctl
DISTPACK     := $(DIST_DIR)/build/distpack
# mk/windows.mk is read after this file, so its WINDOWS_EXE is not yet
# defined where prerequisites are expanded: name the file here.
DIST_WIN_EXE := bin/modelctl.exe
ORT_GO_DIR    = $(shell $(GO) list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go)

DIST_LICENSES = third_party/licenses/onnxruntime.txt=LICENSES/onnxruntime.txt \
	$(ORT_GO_DIR)/LICENSE=LICENSES/onnxruntime_go.txt

.PHONY: dist

dist: $(DIST_SUMS)
	@cat $(DIST_SUMS)

$(DISTPACK): scripts/distpack/main.go
	@mkdir -p $(dir $@)
	$(GO) build -trimpath -o $@ ./scripts/distpack

# The Linux binary of the release is built with cgo (bench loads
# onnxruntime through it) whatever bin/modelctl was built with.
$(DIST_LINUX_BIN): $(GO_SOURCES) go.mod go.sum
	@mkdir -p $(dir $@)
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@.tmp ./cmd/modelctl
	mv $@.tmp $@

$(DIST_WIN): $(DISTPACK) $(DIST_WIN_EXE) $(ORT_DLL) $(ORT_DML_DLL) third_party/licenses/onnxruntime.txt third_party/licenses/DirectML.txt
	$(DISTPACK) -o $@ -dir modelctl-$(VERSION)-windows-amd64 -mtime $(DIST_EPOCH) -x modelctl.exe,onnxruntime.dll,DirectML.dll \
		$(DIST_WIN_EXE)=modelctl.exe $(ORT_DLL)=onnxruntime.dll $(ORT_DML_DLL)=DirectML.dll \
		$(DIST_LICENSES) third_party/licenses/DirectML.txt=LICENSES/DirectML.txt

$(DIST_LINUX): $(DISTPACK) $(DIST_LINUX_BIN) $(ORT_LIB) third_party/licenses/onnxruntime.txt
	$(DISTPACK) -o $@ -dir modelctl-$(VERSION)-linux-amd64 -mtime $(DIST_EPOCH) -x modelctl \
		$(DIST_LINUX_BIN)=modelctl $(ORT_LIB)=libonnxruntime.so.1 $(DIST_LICENSES)
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && tar -xzf $@ -C $$tmp && \
		cd $$tmp/modelctl-$(VERSION)-linux-amd64 && \
		ONNXRUNTIME_LIB= ./modelctl doctor --json > $$tmp/doctor.json && \
		grep -q "\"path\": \"$$tmp/modelctl-$(VERSION)-linux-amd64/libonnxruntime.so.1\"" $$tmp/doctor.json || \
		{ echo "dist: the unpacked modelctl does not load its bundled onnxruntime:"; cat $$tmp/doctor.json; exit 1; }

$(DIST_SUMS): $(DIST_WIN) $(DIST_LINUX)
	cd $(DIST_DIR) && sha256sum $(notdir $(DIST_WIN) $(DIST_LINUX)) > $@.tmp && mv $@.tmp $@
