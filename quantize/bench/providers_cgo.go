//go:build cgo

package bench

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo linux LDFLAGS: -ldl
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#endif
#include "onnxruntime_c_api.h"

typedef const OrtApiBase *(*bench_get_api_base_fn)(void);

// bench_api opens the library (already loaded by onnxruntime_go, so this only
// takes another reference) and returns its API table, or NULL with *err set.
static const OrtApi *bench_api(const char *path, const char **version, const char **err) {
#ifdef _WIN32
	HMODULE h = LoadLibraryA(path);
	if (!h) { *err = "LoadLibrary failed"; return NULL; }
	bench_get_api_base_fn get = (bench_get_api_base_fn)GetProcAddress(h, "OrtGetApiBase");
#else
	void *h = dlopen(path, RTLD_LAZY);
	if (!h) { *err = dlerror(); return NULL; }
	bench_get_api_base_fn get = (bench_get_api_base_fn)dlsym(h, "OrtGetApiBase");
#endif
	if (!get) { *err = "OrtGetApiBase not found"; return NULL; }
	const OrtApiBase *base = get();
	*version = base->GetVersionString();
	const OrtApi *api = base->GetApi(ORT_API_VERSION);
	if (!api) { *err = "the library does not offer the onnxruntime API version this build needs"; return NULL; }
	return api;
}

// bench_providers writes the available providers, one per line, into buf.
static int bench_providers(const OrtApi *api, char *buf, size_t size, const char **err) {
	char **list = NULL;
	int n = 0;
	OrtStatus *st = api->GetAvailableProviders(&list, &n);
	if (st) {
		*err = api->GetErrorMessage(st);
		return -1;
	}
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(list[i]);
		if (used + l + 2 > size) break;
		memcpy(buf + used, list[i], l);
		used += l;
		buf[used++] = '\n';
		buf[used] = 0;
	}
	st = api->ReleaseAvailableProviders(list, n);
	if (st) api->ReleaseStatus(st);
	return n;
}

static const char *bench_build_info(const OrtApi *api) {
	return api->GetBuildInfoString();
}
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// libraryInfo asks the library for its version, build string and the
// execution providers compiled into it.
func libraryInfo(path string) (version, build string, available []string, err error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cver, cerr *C.char
	api := C.bench_api(cpath, &cver, &cerr)
	if api == nil {
		return "", "", nil, fmt.Errorf("onnxruntime %s: %s", path, C.GoString(cerr))
	}
	version = C.GoString(cver)
	build = C.GoString(C.bench_build_info(api))
	buf := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(buf))
	if n := C.bench_providers(api, buf, 4096, &cerr); n < 0 {
		// cerr belongs to a status that is not released; the leak is a
		// few bytes on a path that never happens with a sane library.
		return version, build, nil, fmt.Errorf("onnxruntime %s: GetAvailableProviders: %s", path, C.GoString(cerr))
	}
	available = strings.Fields(C.GoString(buf))
	return version, build, available, nil
}
