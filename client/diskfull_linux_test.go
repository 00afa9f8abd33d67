package client

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smallFilesystem mounts a tmpfs of size bytes for the test, or skips it
// where mounting is not allowed (not root, no tmpfs).
func smallFilesystem(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// A pull into a cache on a full filesystem stops with the one-line disk
// full error and its fix, leaves the target untouched, and, once there is
// room, the same cache finishes the pull.
func TestCLIPullIntoAFullDisk(t *testing.T) {
	full := smallFilesystem(t, "24m")
	srv := startOurs(t)
	pusher := newCLI(t)
	model := synthModel(t, t.TempDir(), 40<<20)
	ref := srv.Addr + "/full/disk:v1"
	pusher.run("push", model, ref)

	puller := newCLI(t)
	puller.cache = filepath.Join(full, "cache")
	out := filepath.Join(t.TempDir(), "m")
	_, errOut, err := puller.try("pull", ref, "-o", out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("pull into a full disk: %v", err)
	}
	msg := strings.TrimSpace(errOut)
	t.Logf("pull into a full disk: %s", msg)
	if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, "--cache-dir") || strings.Count(msg, "\n") > 0 {
		t.Errorf("want one line naming the full disk and the fix, got:\n%s", errOut)
	}
	if _, err := os.Lstat(out); !os.IsNotExist(err) {
		t.Errorf("target exists after a failed pull: %v", err)
	}

	// Room again: move the cache to a roomy disk and pull once more.
	roomy := filepath.Join(t.TempDir(), "cache")
	if err := exec.Command("cp", "-a", puller.cache, roomy).Run(); err != nil {
		t.Fatal(err)
	}
	puller.cache = roomy
	var res PullResult
	puller.runJSON(&res, "pull", ref, "-o", out)
	sameFile(t, model+".data", filepath.Join(out, "model.onnx.data"))
	if res.Transferred >= res.Size {
		t.Errorf("the pull after the full disk transferred %d of %d bytes: it did not continue", res.Transferred, res.Size)
	}
}
