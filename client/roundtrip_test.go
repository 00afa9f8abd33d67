package client

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

func TestPushPullRoundTrip(t *testing.T) {
	srv := testenv.StartDistribution(t)
	ctx := context.Background()
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 1234)
	writeRandom(t, filepath.Join(src, "model.onnx.data"), 70<<20+17)
	files := []PushFile{
		{Path: "model.onnx", Source: filepath.Join(src, "model.onnx")},
		{Path: "model.onnx.data", Source: filepath.Join(src, "model.onnx.data"), MinSize: 70 << 20},
	}
	c := newTestClient(t, Options{ChunkSize: 16 << 20})
	ref, err := ParseReference(srv.Addr + "/sarai/audio-core:int8")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(ctx, ref, PushOptions{Files: files, Tags: []string{"latest"}, Pack: manifests.PackOptions{Name: "audio-core", Precision: "int8"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transferred != 70<<20+17+1234 {
		t.Errorf("first push transferred %d bytes", res.Transferred)
	}
	// A second push of the unchanged files sends nothing.
	res2, err := c.Push(ctx, ref, PushOptions{Files: files, Pack: manifests.PackOptions{Name: "audio-core", Precision: "int8"}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Transferred != 0 {
		t.Errorf("re-push transferred %d bytes", res2.Transferred)
	}
	for _, f := range res2.Files {
		if f.Status != StatusExists {
			t.Errorf("re-push %s: status %s", f.Path, f.Status)
		}
	}

	// Pull with a fresh cache, by tag and by digest.
	for _, r := range []string{srv.Addr + "/sarai/audio-core:latest", srv.Addr + "/sarai/audio-core@" + res.Digest.String()} {
		pc := newTestClient(t, Options{})
		pref, _ := ParseReference(r)
		dst := filepath.Join(t.TempDir(), "out")
		pr, err := pc.Pull(ctx, pref, dst)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Transferred != res.Transferred {
			t.Errorf("pull transferred %d, want %d", pr.Transferred, res.Transferred)
		}
		for _, f := range files {
			sameFile(t, f.Source, filepath.Join(dst, f.Path))
		}
		rc, err := ReadReceipt(dst)
		if err != nil || len(rc.Files) != 2 || rc.Digest != pr.Digest {
			t.Fatalf("receipt %+v, %v", rc, err)
		}
		// Second pull into another dir: nothing transferred, hardlinked.
		dst2 := filepath.Join(t.TempDir(), "out2")
		pr2, err := pc.Pull(ctx, pref, dst2)
		if err != nil {
			t.Fatal(err)
		}
		if pr2.Transferred != 0 {
			t.Errorf("second pull transferred %d", pr2.Transferred)
		}
		a, _ := os.Stat(filepath.Join(dst2, "model.onnx.data"))
		b, _ := os.Stat(pc.Cache().BlobPath(pr2.Files[1].Digest))
		if !os.SameFile(a, b) {
			t.Errorf("installed file is not a hardlink of the cache blob")
		}
	}
}

// Files with the same content are one blob: pushed once, fetched once,
// installed at both paths. A push of the same file to another repository
// of the registry mounts it instead of uploading.
func TestDuplicateContentAndMount(t *testing.T) {
	srv := testenv.StartDistribution(t)
	ctx := context.Background()
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "a.bin"), 3<<20)
	b, _ := os.ReadFile(filepath.Join(src, "a.bin"))
	os.WriteFile(filepath.Join(src, "b.bin"), b, 0o644)
	files := []PushFile{{Path: "a.bin", Source: filepath.Join(src, "a.bin")}, {Path: "docs/b.bin", Source: filepath.Join(src, "b.bin")}}
	c := newTestClient(t, Options{})
	ref, _ := ParseReference(srv.Addr + "/dup/one:v1")
	if _, err := c.Push(ctx, ref, PushOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "m")
	pr, err := newTestClient(t, Options{}).Pull(ctx, ref, dst)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Transferred != 3<<20 {
		t.Errorf("pull transferred %d, want one copy (%d)", pr.Transferred, 3<<20)
	}
	sameFile(t, filepath.Join(src, "a.bin"), filepath.Join(dst, "a.bin"))
	sameFile(t, filepath.Join(src, "a.bin"), filepath.Join(dst, "docs", "b.bin"))

	other, _ := ParseReference(srv.Addr + "/dup/two:v1")
	res, err := c.Push(ctx, other, PushOptions{Files: files[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files[0].Status != StatusMounted || res.Transferred != 0 {
		t.Errorf("push to another repository: %+v", res.Files[0])
	}
	pullAndCompare2(t, srv.Addr+"/dup/two:v1", filepath.Join(src, "a.bin"), "a.bin")
}

func pullAndCompare2(t *testing.T, ref, src, path string) {
	t.Helper()
	r, _ := ParseReference(ref)
	dst := filepath.Join(t.TempDir(), "m")
	if _, err := newTestClient(t, Options{}).Pull(context.Background(), r, dst); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, filepath.Join(dst, path))
}

// A file whose digest the cache knows goes to another registry without
// being hashed again; if it changed behind the cache's back (same size,
// mtime and inode), a registry that does not hold that digest refuses it
// and the push hashes and sends it again: what lands is the file as it is.
// (A registry that holds the digest is not sent the file at all: the cache
// key is what decides "unchanged", as for rsync's quick check.)
func TestPushTrustsTheDigestCacheSafely(t *testing.T) {
	a, b, third := testenv.StartOurs(t), testenv.StartOurs(t), testenv.StartDistribution(t)
	c := newTestClient(t, Options{})
	res, src := pushRandom(t, c, a.Addr+"/known/m:v1", 9<<20+5)
	old := res.Files[0].Digest

	// Unchanged: the second registry gets it, under the same digest.
	res2 := pushFileAs(t, c, b.Addr+"/known/m:v1", src)
	if res2.Files[0].Digest != old || res2.Files[0].Status != StatusUploaded {
		t.Fatalf("push of a known file: %+v", res2.Files[0])
	}
	pullAndCompare(t, b.Addr+"/known/m:v1", src)

	// Changed in place, size and mtime put back: the cache still says old.
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(src, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if d, ok := c.cache.LookupDigest(src, mustStat(t, src)); !ok || d != old {
		t.Fatalf("the test did not fool the digest cache: %s %v", d, ok)
	}
	res3 := pushFileAs(t, c, third.Addr+"/known/m:v2", src)
	if res3.Files[0].Digest == old {
		t.Fatal("pushed the stale digest")
	}
	pullAndCompare(t, third.Addr+"/known/m:v2", src)
	if d, _ := c.cache.LookupDigest(src, mustStat(t, src)); d != res3.Files[0].Digest {
		t.Errorf("digest cache after the refused push: %s, want %s", d, res3.Files[0].Digest)
	}
}

func pushFileAs(t *testing.T, c *Client, ref, src string) *PushResult {
	t.Helper()
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(context.Background(), r, PushOptions{Files: []PushFile{{Path: "model.onnx.data", Source: src}}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}
