//go:build unix

package modelfile_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
)

// A FIFO is refused without being opened (opening one would block).
func TestOpenRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), "{}")
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, fifo} {
		_, err := modelfile.Open(context.Background(), p, modelfile.Options{})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Open(%s) = %v", filepath.Base(p), err)
		}
	}
	// Whatever format is forced, the FIFO is refused before it is opened.
	for _, f := range []modelfile.Format{modelfile.FormatRaw, modelfile.FormatGGUF, modelfile.FormatSafetensors, modelfile.FormatONNX} {
		done := make(chan error, 1)
		go func() {
			_, err := modelfile.Open(context.Background(), fifo, modelfile.Options{Format: f})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("--format %s: %v", f, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("--format %s: Open blocked on the FIFO", f)
		}
	}
	// A link to a FIFO inside a directory, and an index beside a shard.
	if err := os.Symlink(fifo, filepath.Join(dir, "x.safetensors.index.json")); err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(dir, "model.safetensors")
	if err := modelfiletest.WriteSafetensors(shard, modelfiletest.ThreeShards()[0], nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := modelfile.Open(context.Background(), shard, modelfile.Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("shard beside a FIFO index: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open blocked on a FIFO named like an index")
	}
}
