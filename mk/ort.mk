# onnxruntime for `modelctl bench`/`doctor` and the quantize/bench tests: the
# CPU library shipped inside the npm package onnxruntime-node, fetched with
# `npm pack` (never `npm install`: its install script downloads from hosts this
# network cannot reach), verified by sha256 and unpacked into the cache. The
# Windows DLLs (onnxruntime + DirectML) come from the same tarball for the
# Windows build. Each target is a file, so a second run does nothing.

ORT_VERSION    := 1.30.0
ORT_DIR        := $(CACHE)/onnxruntime-$(ORT_VERSION)
ORT_TGZ        := $(ORT_DIR)/onnxruntime-node-$(ORT_VERSION).tgz
ORT_LIB        := $(ORT_DIR)/linux-x64/libonnxruntime.so.1
ORT_DLL        := $(ORT_DIR)/win32-x64/onnxruntime.dll
ORT_DML_DLL    := $(ORT_DIR)/win32-x64/DirectML.dll

ORT_TGZ_SHA256 := 6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_LIB_SHA256 := ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ORT_DLL_SHA256 := 508c362f5673483dd3a086379c392795b2e42d10d5e6f3f90ebd7ac21c97af67
ORT_DML_SHA256 := 234e8898778cdec88d3cb0539508273494082812c968699f3de665a018971625

TEST_DEPS += $(ORT_LIB)
BENCH_TARGETS += bench-noise

.PHONY: ort ort-windows bench-noise

# `make ort` is the one command the "onnxruntime not found" error names.
ort: $(ORT_LIB)
ort-windows: $(ORT_DLL) $(ORT_DML_DLL)

$(ORT_TGZ):
	@mkdir -p $(ORT_DIR)/tmp
	cd $(ORT_DIR)/tmp && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null
	echo "$(ORT_TGZ_SHA256)  $(ORT_DIR)/tmp/onnxruntime-node-$(ORT_VERSION).tgz" | sha256sum -c --quiet -
	mv $(ORT_DIR)/tmp/onnxruntime-node-$(ORT_VERSION).tgz $@ && rmdir $(ORT_DIR)/tmp

# ort_extract TARBALL MEMBER DEST SHA256: unpack one member to a temporary
# name, verify it, and only then move it into place.
define ort_extract
	@mkdir -p $(dir $(3))
	tar -xzOf $(1) $(2) > $(3).tmp
	echo "$(4)  $(3).tmp" | sha256sum -c --quiet - || { rm -f $(3).tmp; exit 1; }
	chmod 0644 $(3).tmp && mv $(3).tmp $(3)
endef

$(ORT_LIB): $(ORT_TGZ)
	$(call ort_extract,$<,package/bin/napi-v6/linux/x64/libonnxruntime.so.1,$@,$(ORT_LIB_SHA256))

$(ORT_DLL): $(ORT_TGZ)
	$(call ort_extract,$<,package/bin/napi-v6/win32/x64/onnxruntime.dll,$@,$(ORT_DLL_SHA256))

$(ORT_DML_DLL): $(ORT_TGZ)
	$(call ort_extract,$<,package/bin/napi-v6/win32/x64/DirectML.dll,$@,$(ORT_DML_SHA256))

# Timer noise: the same model benchmarked against itself with one thread;
# prints the p50 difference of each repetition and the median (budget 15%).
bench-noise: bin/modelctl $(ORT_LIB)
	./quantize/bench/scripts/noise.sh
