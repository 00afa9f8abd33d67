# Windows under Wine: the end-to-end test of modelctl.exe (e2e/windows_test.go)
# runs the workstation half of the workflow as a Windows program. Debian's
# wine64 (Wine 8.0), installed once by apt; a prefix under .cache/wine,
# created without a display or the Mono/Gecko installer dialogs; and
# bcryptprimitives.dll, built from e2e/testdata/wine with mingw-w64: Go >=
# 1.24 programs take their random bytes from its ProcessPrng, which Wine 8.0
# lacks (without it modelctl.exe dies at start). The DLL goes into the test
# prefix only. Each target is a file, so a second run does nothing.
#
# The test uses bin/modelctl.exe (mk/windows.mk, rebuilt when any Go source
# changes) with onnxruntime.dll next to it (mk/ort.mk), as in the release zip.

WINE        := /usr/lib/wine/wine64
WINESERVER  := /usr/lib/wine/wineserver
WINE_DIR    := $(CACHE)/wine
WINE_PREFIX := $(WINE_DIR)/prefix
WINE_BCRYPT := $(WINE_DIR)/bcryptprimitives.dll
WINE_READY  := $(WINE_PREFIX)/.modelctl-ready
WINE_ENV    := WINEPREFIX=$(WINE_PREFIX) WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY= WAYLAND_DISPLAY=

# internal/testenv finds them here.
export MODELCTL_WINE        := $(WINE)
export MODELCTL_WINEPREFIX  := $(WINE_PREFIX)
export MODELCTL_WINDOWS_BIN := $(ROOT)/$(WINDOWS_EXE)

TEST_DEPS += $(WINE_READY) $(WINDOWS_EXE) $(ORT_DLL) $(ORT_DML_DLL)

.PHONY: wine

wine: $(WINE_READY)

$(WINE):
	test -e $@ || (apt-get update && apt-get install -y --no-install-recommends wine64)
	test -e $@

$(WINE_BCRYPT): e2e/testdata/wine/bcryptprimitives.c e2e/testdata/wine/bcryptprimitives.def | $(MINGW_CC)
	@mkdir -p $(WINE_DIR)
	$(MINGW_CC) -O2 -shared -s -Wl,--no-insert-timestamp -o $@.tmp $^ -ladvapi32
	mv $@.tmp $@

# A wineserver left on the prefix (a killed test) is stopped first.
# wineboot's output goes nowhere: the wineserver it starts lingers a few
# seconds holding whatever it was given, and a pipe (make test | tee) would
# wait for it; -w waits until it has written the prefix and gone.
$(WINE_READY): $(WINE) $(WINE_BCRYPT)
	@mkdir -p $(WINE_PREFIX)
	rm -f $@
	$(WINE_ENV) $(WINESERVER) -k 2>/dev/null || true
	$(WINE_ENV) $(WINE) wineboot --init </dev/null >/dev/null 2>&1 || true
	$(WINE_ENV) timeout 120 $(WINESERVER) -w
	test -d $(WINE_PREFIX)/drive_c/windows/system32
	cp $(WINE_BCRYPT) $(WINE_PREFIX)/drive_c/windows/system32/bcryptprimitives.dll
	touch $@
