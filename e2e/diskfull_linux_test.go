package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
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
	srv := testenv.StartOurs(t)
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

	// The layer cannot fit: refused before a byte of it was fetched, so
	// no partial download holds the little room left.
	if partials, _ := filepath.Glob(filepath.Join(puller.cache, "partial", "*")); len(partials) > 0 {
		var big []string
		for _, p := range partials {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 1<<20 {
				big = append(big, p)
			}
		}
		if len(big) > 0 {
			t.Errorf("partial downloads left in the full cache: %v", big)
		}
	}

	// Room again: move the cache to a roomy disk and pull once more.
	roomy := filepath.Join(t.TempDir(), "cache")
	if err := exec.Command("cp", "-a", puller.cache, roomy).Run(); err != nil {
		t.Fatal(err)
	}
	puller.cache = roomy
	var res client.PullResult
	puller.runJSON(&res, "pull", ref, "-o", out)
	sameFile(t, model+".data", filepath.Join(out, "model.onnx.data"))
}

// A disk that fills up during a pull (here: another writer takes the room
// the layer needed after the pull checked it) fails with one line and its
// fix, and the pull continues from what it kept once there is room.
func TestCLIPullIntoADiskThatFills(t *testing.T) {
	full := smallFilesystem(t, "64m")
	srv := testenv.StartOurs(t)
	pusher := newCLI(t)
	model := synthModel(t, t.TempDir(), 40<<20)
	ref := srv.Addr + "/full/fills:v1"
	pusher.run("push", model, ref)

	puller := newCLI(t)
	puller.cache = filepath.Join(full, "cache")
	out := filepath.Join(t.TempDir(), "m")
	// Throttled, so that the filler lands while the layer is on its way.
	proxy := throttlingProxy(t, srv.Addr, func(r *http.Response) bool { return r.ContentLength > 1<<20 }, 20<<20)
	done := make(chan struct{})
	var errOut string
	var err error
	go func() {
		defer close(done)
		_, errOut, err = puller.try("pull", proxy+"/full/fills:v1", "-o", out)
	}()
	// Wait for the layer to start arriving, then take most of the room.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if ps, _ := filepath.Glob(filepath.Join(puller.cache, "partial", "*")); len(ps) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	filler := filepath.Join(full, "filler")
	_ = exec.Command("fallocate", "-l", "40m", filler).Run()
	<-done
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("pull into a disk that fills: %v", err)
	}
	msg := strings.TrimSpace(errOut)
	if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, "--cache-dir") || strings.Count(msg, "\n") > 0 {
		t.Errorf("want one line naming the full disk and the fix, got:\n%s", errOut)
	}
	// Room again: the pull continues.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var res client.PullResult
	puller.runJSON(&res, "pull", ref, "-o", out)
	sameFile(t, model+".data", filepath.Join(out, "model.onnx.data"))
	if res.Transferred >= res.Size {
		t.Errorf("the pull after the full disk transferred %d of %d bytes: it did not continue", res.Transferred, res.Size)
	}
}

// A push to a registry whose disk fills up stops at once (no retries) with
// a line saying so; once the registry has room the push continues from the
// bytes it kept (the registry commits an upload every 128 MiB it receives:
// the disk fills at 160 MiB, after the first of those).
func TestCLIPushToAFullRegistry(t *testing.T) {
	root := smallFilesystem(t, "160m")
	p := testenv.StartServe(t, nil, "--root", root)
	c := newCLI(t)
	model := synthModel(t, t.TempDir(), 200<<20)
	ref := p.Addr + "/full/registry:v1"
	start := time.Now()
	_, errOut, err := c.try("push", model, ref)
	if err == nil {
		t.Fatal("push to a full registry succeeded")
	}
	msg := strings.TrimSpace(errOut)
	t.Logf("push to a full registry (%v): %s", time.Since(start).Round(time.Millisecond), msg)
	if !strings.Contains(msg, "out of disk space") || strings.Count(msg, "\n") > 0 {
		t.Errorf("want one line saying the registry is out of disk space, got:\n%s", errOut)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the push took %v to give up: it retried a full disk", time.Since(start))
	}

	if err := syscall.Mount("tmpfs", root, "tmpfs", syscall.MS_REMOUNT, "size=512m"); err != nil {
		t.Fatalf("grow the registry's filesystem: %v", err)
	}
	var res client.PushResult
	c.runJSON(&res, "push", model, ref)
	data := res.Files[len(res.Files)-1]
	if data.Status != client.StatusResumed || data.ResumedFrom != 128<<20 || data.Transferred != data.Size-128<<20 {
		t.Errorf("the push after the full disk did not continue from the registry's 128 MiB: %+v", data)
	}
	c.run("pull", ref, "-o", filepath.Join(t.TempDir(), "m"))
}
