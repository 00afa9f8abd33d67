package client

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/manifests"
)

func TestPushPullRoundTrip(t *testing.T) {
	srv := startDistribution(t)
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
	srv := startDistribution(t)
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
