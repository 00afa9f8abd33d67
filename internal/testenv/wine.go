package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// WineReady is the file `make tools` (mk/wine.mk) writes into the Wine
// prefix once it is created and holds the ProcessPrng shim.
const WineReady = ".modelctl-ready"

// Wine runs Windows programs for the tests: Debian's wine64 on the prefix
// that `make tools` prepares under .cache/wine, with its own wineserver for
// the test, stopped when the test ends.
type Wine struct {
	// Bin is the wine64 loader.
	Bin string
	// Env is what a Windows program is started with, besides os.Environ:
	// the prefix, no debug output, no display, and no Mono or Gecko
	// installer dialogs.
	Env []string
}

// StartWine checks the Wine installation and the prefix, starts a
// persistent wineserver (each program then starts in a fraction of a
// second) and stops it when the test ends.
func StartWine(t testing.TB) *Wine {
	t.Helper()
	bin := os.Getenv("MODELCTL_WINE")
	if bin == "" {
		bin = "/usr/lib/wine/wine64"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("testenv: wine64 is not installed at %s: run `make tools` first", bin)
	}
	prefix := os.Getenv("MODELCTL_WINEPREFIX")
	if prefix == "" {
		prefix = filepath.Join(Root(t), ".cache", "wine", "prefix")
	}
	if _, err := os.Stat(filepath.Join(prefix, WineReady)); err != nil {
		t.Fatalf("testenv: no Wine prefix ready at %s: run `make tools` first", prefix)
	}
	w := &Wine{Bin: bin, Env: []string{
		"WINEPREFIX=" + prefix,
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=mscoree,mshtml=",
		"DISPLAY=",
		"WAYLAND_DISPLAY=",
	}}
	server := filepath.Join(filepath.Dir(bin), "wineserver")
	// A server left by a test run that was killed (a timeout skips the
	// cleanup below) is stopped first; the prefix is the tests' alone.
	kill := exec.Command(server, "-k")
	kill.Env = append(os.Environ(), w.Env...)
	_ = kill.Run()
	// No pipes: the server goes on in the background holding whatever
	// descriptors it was given, and a pipe would never reach EOF.
	start := exec.Command(server, "-p")
	start.Env = append(os.Environ(), w.Env...)
	if err := start.Run(); err != nil {
		t.Fatalf("start wineserver -p: %v", err)
	}
	t.Cleanup(func() {
		stop := exec.Command(server, "-k")
		stop.Env = append(os.Environ(), w.Env...)
		_ = stop.Run()
		// Go's os.RemoveAll on Windows uses a delete call Wine 8.0 lacks
		// (FileDispositionInformationEx), so the temporary directories of
		// the programs (bench, push) stay behind in the prefix: remove them
		// from this side.
		temps, _ := filepath.Glob(filepath.Join(prefix, "drive_c", "users", "*", "Temp", "*"))
		for _, p := range temps {
			_ = os.RemoveAll(p)
		}
	})
	return w
}

// Path is a Linux path as a Windows program under Wine sees it: Wine maps
// drive Z: to /.
func (w *Wine) Path(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		abs = p
	}
	return `Z:` + strings.ReplaceAll(abs, "/", `\`)
}

// Command runs exe (a Linux path to a Windows program) under Wine.
func (w *Wine) Command(exe string, args ...string) *exec.Cmd {
	cmd := exec.Command(w.Bin, append([]string{exe}, args...)...)
	cmd.Env = append(os.Environ(), w.Env...)
	return cmd
}

// Output runs cmd (from Command) and returns what it wrote to stdout and
// stderr. They go through files, not pipes: the helper processes Wine
// starts with a program (services.exe, winedevice.exe) inherit its
// descriptors and outlive it, and a pipe would not reach EOF before they
// are gone.
func (w *Wine) Output(cmd *exec.Cmd) (stdout, stderr []byte, err error) {
	dir, err := os.MkdirTemp("", "modelctl-wine-out-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	var files [2]*os.File
	for i, name := range []string{"stdout", "stderr"} {
		if files[i], err = os.Create(filepath.Join(dir, name)); err != nil {
			return nil, nil, err
		}
		defer files[i].Close()
	}
	cmd.Stdout, cmd.Stderr = files[0], files[1]
	err = cmd.Run()
	stdout, _ = os.ReadFile(files[0].Name())
	stderr, _ = os.ReadFile(files[1].Name())
	return stdout, stderr, err
}

var windowsBuild build

// WindowsModelctl returns the path of modelctl.exe for windows/amd64, built
// from this checkout with cgo and mingw-w64 as `make windows` builds it
// (once per test process), or $MODELCTL_WINDOWS_BIN when set.
func WindowsModelctl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MODELCTL_WINDOWS_BIN"); p != "" {
		return p
	}
	cc := "/usr/bin/x86_64-w64-mingw32-gcc"
	if _, err := os.Stat(cc); err != nil {
		t.Fatalf("testenv: the mingw-w64 compiler is not installed at %s: run `make tools` first", cc)
	}
	return windowsBuild.get(t, "modelctl.exe", []string{"GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=1", "CC=" + cc, "CGO_CFLAGS=-O2 -w"}, "-trimpath")
}
