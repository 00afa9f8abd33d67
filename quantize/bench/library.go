package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ORTVersion is the onnxruntime release `make ort` installs and the tests
// run against.
const ORTVersion = "1.30.0"

// LibraryEnv names the environment variable that points at the onnxruntime
// shared library.
const LibraryEnv = "ONNXRUNTIME_LIB"

// InstallHint is the one command that installs onnxruntime into the cache.
const InstallHint = "make ort"

// ErrLibraryNotFound is returned (wrapped) by LibraryPath when no library is
// found; its message says how to install one.
var ErrLibraryNotFound = errors.New("onnxruntime library not found")

// cacheRelPath is where `make ort` puts the library for this platform,
// relative to the module root, and libName its file name.
func cacheRelPath() (string, string) {
	dir := filepath.Join(".cache", "onnxruntime-"+ORTVersion)
	switch runtime.GOOS + "/" + runtime.GOARCH {
	case "linux/amd64":
		return filepath.Join(dir, "linux-x64"), "libonnxruntime.so.1"
	case "linux/arm64":
		return filepath.Join(dir, "linux-arm64"), "libonnxruntime.so.1"
	case "windows/amd64":
		return filepath.Join(dir, "win32-x64"), "onnxruntime.dll"
	case "windows/arm64":
		return filepath.Join(dir, "win32-arm64"), "onnxruntime.dll"
	case "darwin/arm64":
		return filepath.Join(dir, "darwin-arm64"), "libonnxruntime.1.dylib"
	}
	return filepath.Join(dir, runtime.GOOS+"-"+runtime.GOARCH), "libonnxruntime.so"
}

// LibraryPath finds the onnxruntime shared library: explicit (the --ort-lib
// flag) when set, else $ONNXRUNTIME_LIB, else the cache `make ort` fills,
// looked for above the working directory and above the running binary, else
// the library next to the binary. A path given explicitly or by the
// environment must exist; nothing falls through past it, so a typo is never
// silently replaced by another library.
func LibraryPath(explicit string) (string, error) {
	check := func(p, from string) (string, error) {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("onnxruntime library from %s: %w", from, err)
		}
		if st.IsDir() {
			return "", fmt.Errorf("onnxruntime library from %s: %s is a directory, want the library file", from, p)
		}
		return filepath.Abs(p)
	}
	if explicit != "" {
		return check(explicit, "--ort-lib")
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		return check(env, "$"+LibraryEnv)
	}
	rel, name := cacheRelPath()
	var tried []string
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	exeDir := ""
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		exeDir = filepath.Dir(exe)
		starts = append(starts, exeDir)
	}
	seen := map[string]bool{}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, rel, name)
			if !seen[p] {
				seen[p] = true
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					return p, nil
				}
				if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
					tried = append(tried, p)
				}
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exeDir != "" {
		p := filepath.Join(exeDir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("%w (looked for --ort-lib, $%s, %s): run `%s` in the modelctl checkout to install onnxruntime %s, or point --ort-lib or $%s at %s",
		ErrLibraryNotFound, LibraryEnv, strings.Join(tried, ", "), InstallHint, ORTVersion, LibraryEnv, name)
}
