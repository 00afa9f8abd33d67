package pin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadLockedTakesTurns: while one command holds a config's lock,
// another waits, says for whom, and goes on once it is released; one that
// waits too long fails with ErrLocked naming the holder.
func TestLoadLockedTakesTurns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(path, []byte("audio:\n  artifact: r/m:v1\n  model_path: models/m.onnx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, release, err := LoadLocked(ctx, path, "sync", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	_, _, err = LoadLocked(ctx, path, "rollback", 300*time.Millisecond, &log)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "modelctl sync (pid") {
		t.Fatalf("second lock while held: %v; want ErrLocked naming the holder", err)
	}
	if !strings.Contains(log.String(), "waiting for modelctl sync (pid") {
		t.Fatalf("waiter's message: %q", log.String())
	}

	done := make(chan error, 1)
	go func() {
		cfg, rel, err := LoadLocked(ctx, path, "pin", 10*time.Second, nil)
		if err == nil {
			if cfg.Path != path {
				err = errors.New("loaded another config")
			}
			rel()
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("took the lock while it was held: %v", err)
	default:
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock after its release")
	}

	// A cancelled wait ends at once with the context's error.
	_, release, err = LoadLocked(ctx, path, "sync", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := LoadLocked(cctx, path, "sync", time.Minute, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// TestLoadLockedMissingConfig: a config that is not there is an error
// before any lock file is made.
func TestLoadLockedMissingConfig(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadLocked(context.Background(), filepath.Join(dir, "nope.yaml"), "sync", time.Second, nil); err == nil {
		t.Fatal("locked a missing config")
	}
	if _, err := os.Stat(filepath.Join(dir, ".modelctl")); !os.IsNotExist(err) {
		t.Fatalf("a lock directory was made for a missing config: %v", err)
	}
}
