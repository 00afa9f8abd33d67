package client

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelctl/modelctl/internal/testenv"
)

func TestCachePruneKeepsWhatIsInstalled(t *testing.T) {
	tmp := t.TempDir()
	if _, ok := linkCount(tmp, mustStat(t, tmp)); !ok {
		t.Skip("no link counts on this platform: prune removes no blob")
	}
	srv := testenv.StartOurs(t)
	ctx := context.Background()
	pusher := newTestClient(t, Options{})
	res, src := pushRandom(t, pusher, srv.Addr+"/prune/m:v1", linkThreshold+5)
	data := res.Files[0].Digest

	c := newTestClient(t, Options{})
	ref, _ := ParseReference(srv.Addr + "/prune/m:v1")
	dst := filepath.Join(t.TempDir(), "m")
	if _, err := c.Pull(ctx, ref, dst); err != nil {
		t.Fatal(err)
	}
	blobs, err := c.Cache().Blobs()
	if err != nil || len(blobs) != 1 || blobs[0].Digest != data || blobs[0].Installs != 1 {
		t.Fatalf("after a pull: %+v, %v; want the data blob installed once", blobs, err)
	}

	// Installed: kept, however old.
	pr, err := c.Cache().Prune(PruneOptions{})
	if err != nil || len(pr.Removed) != 0 || pr.Kept != 1 {
		t.Fatalf("prune with the blob installed: %+v, %v", pr, err)
	}
	// No longer installed, but used a moment ago: kept for a week.
	if err := os.Remove(filepath.Join(dst, "model.onnx.data")); err != nil {
		t.Fatal(err)
	}
	if pr, err = c.Cache().Prune(PruneOptions{Unused: time.Hour}); err != nil || len(pr.Removed) != 0 {
		t.Fatalf("prune of a blob used a moment ago: %+v, %v", pr, err)
	}
	// A dry run removes nothing; then it goes, with an abandoned download.
	old := time.Now().Add(-2 * time.Hour)
	partial := filepath.Join(c.Cache().Dir(), "partial", "abandoned")
	if err := os.WriteFile(partial, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(partial, old, old); err != nil {
		t.Fatal(err)
	}
	if pr, err = c.Cache().Prune(PruneOptions{DryRun: true}); err != nil || len(pr.Removed) != 1 || pr.Partials != 1 {
		t.Fatalf("dry run: %+v, %v", pr, err)
	}
	if _, err := os.Stat(c.Cache().BlobPath(data)); err != nil {
		t.Fatalf("a dry run removed the blob: %v", err)
	}
	pr, err = c.Cache().Prune(PruneOptions{Unused: 0})
	if err != nil || len(pr.Removed) != 1 || pr.Freed != linkThreshold+5 || pr.Partials != 1 || pr.PartialBytes != 1000 {
		t.Fatalf("prune: %+v, %v", pr, err)
	}
	for _, p := range []string{c.Cache().BlobPath(data), partial} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the prune: %v", p, err)
		}
	}
	// The next pull fetches it again.
	again, err := c.Pull(ctx, ref, dst)
	if err != nil || again.Transferred != linkThreshold+5 {
		t.Fatalf("pull after prune: %+v, %v", again, err)
	}
	sameFile(t, src, filepath.Join(dst, "model.onnx.data"))
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}
