package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// cachedArtifact puts files into c's cache as verified blobs and returns
// the artifact's manifest and a digest reference to it.
func cachedArtifact(t *testing.T, c *Client, contents map[string][]byte) (Reference, []byte) {
	t.Helper()
	var files []manifests.File
	for p, b := range contents {
		d := digest.FromBytes(b)
		tmp := filepath.Join(c.cache.Dir(), "tmp", "t-"+randomSuffix())
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.cache.addBlob(d, tmp); err != nil {
			t.Fatal(err)
		}
		files = append(files, manifests.File{Path: p, MediaType: manifests.LayerMediaType(p), Digest: d, Size: int64(len(b))})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	art, err := manifests.Pack(files, manifests.PackOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ParseReference("127.0.0.1:1/t/m@" + digest.FromBytes(art.Manifest).String())
	if err != nil {
		t.Fatal(err)
	}
	return ref, art.Manifest
}

// snapshot lists every entry under dir with its content (files) or
// target (links).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link " + l
		case fi.IsDir():
			out[rel] = "dir"
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

// failEachStep counts the fault points of a successful install (at least
// min), then fails each in turn on a fresh target from setup: the install
// must report the injected error and leave the target's parent byte for
// byte as it was.
func failEachStep(t *testing.T, min int, setup func(*testing.T) string, install func(*testing.T, string) error) {
	t.Helper()
	defer func() { installFault = nil }()
	steps := 0
	installFault = func(step, path string) error { steps++; return nil }
	if err := install(t, setup(t)); err != nil {
		t.Fatal(err)
	}
	if steps < min {
		t.Fatalf("only %d steps counted", steps)
	}
	for n := 1; n <= steps; n++ {
		t.Run(fmt.Sprint("fault at step ", n), func(t *testing.T) {
			dir := setup(t)
			before := snapshot(t, filepath.Dir(dir))
			i := 0
			var failed string
			installFault = func(step, path string) error {
				i++
				if i == n {
					failed = step + " " + path
					return errors.New("injected")
				}
				return nil
			}
			if err := install(t, dir); err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("fault at %s: err %v", failed, err)
			}
			if after := snapshot(t, filepath.Dir(dir)); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("fault at %s changed the target:\nbefore %v\nafter  %v", failed, before, after)
			}
		})
	}
	installFault = nil
}

func newCacheClient(t *testing.T) *Client {
	t.Helper()
	c, err := New(Options{CacheDir: t.TempDir(), Credentials: nil})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An install that fails at any step (a directory, a staged file, keeping
// the previous file, switching, the receipt) leaves every file of the
// target as it was and no directory of its own behind; without a fault,
// the previous file whose bytes the cache holds is replaced and a file
// of unknown bytes is moved aside, never lost.
func TestInstallIsAllOrNothing(t *testing.T) {
	c := newCacheClient(t)
	big := bytes.Repeat([]byte("w"), linkThreshold+1)
	ref, raw := cachedArtifact(t, c, map[string][]byte{
		"a.bin":           []byte("new a"),
		"sub/b.bin":       []byte("new b"),
		"sub/deep/c.data": big,
	})
	// sub/b.bin holds a version the cache knows (an earlier install).
	cachedArtifact(t, c, map[string][]byte{"old/b.bin": []byte("old b")})

	setup := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "app", "models")
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		for p, b := range map[string]string{"a.bin": "copied by hand", "sub/b.bin": "old b", "keep.txt": "mine"} {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}

	failEachStep(t, 8, setup, func(t *testing.T, dir string) error {
		_, err := c.InstallCached(context.Background(), ref, raw, dir)
		return err
	})

	dir := setup(t)
	res, err := c.InstallCached(context.Background(), ref, raw, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, dir)
	if got["a.bin"] != "new a" || got["sub/b.bin"] != "new b" || got["keep.txt"] != "mine" || got["sub/deep/c.data"] != string(big) {
		t.Fatalf("installed: %v", got)
	}
	if len(res.Kept) != 1 || !strings.HasPrefix(filepath.Base(res.Kept[0]), "a.bin"+KeptSuffix) {
		t.Fatalf("kept %v, want a.bin moved aside", res.Kept)
	}
	if b, _ := os.ReadFile(res.Kept[0]); string(b) != "copied by hand" {
		t.Fatalf("kept file holds %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "sub", "b.bin"+KeptSuffix+"*")); len(m) != 0 {
		t.Fatalf("a previous version the cache holds was kept: %v", m)
	}
}

// A failed install into a directory that did not exist leaves no
// directory behind.
func TestInstallCreatesNothingOnFailure(t *testing.T) {
	c := newCacheClient(t)
	ref, raw := cachedArtifact(t, c, map[string][]byte{"a.bin": []byte("a"), "x/b.bin": []byte("b")})
	base := t.TempDir()
	dir := filepath.Join(base, "new", "models")
	installFault = func(step, path string) error {
		if step == "receipt" {
			return errors.New("injected")
		}
		return nil
	}
	defer func() { installFault = nil }()
	if _, err := c.InstallCached(context.Background(), ref, raw, dir); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Lstat(filepath.Join(base, "new")); !os.IsNotExist(err) {
		t.Fatalf("a failed install left %s: %v", filepath.Join(base, "new"), err)
	}
}

// A symbolic link planted as a sub-directory of the target is refused
// before any file is switched (the file next to it stays as it was).
func TestInstallRefusesALinkedDirectoryFirst(t *testing.T) {
	c := newCacheClient(t)
	ref, raw := cachedArtifact(t, c, map[string][]byte{"a.bin": []byte("new a"), "sub/b.bin": []byte("new b")})
	dir := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.bin"), []byte("old a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err := c.InstallCached(context.Background(), ref, raw, dir)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("err %v", err)
	}
	if after := snapshot(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("target changed:\nbefore %v\nafter  %v", before, after)
	}
	if e, _ := os.ReadDir(elsewhere); len(e) != 0 {
		t.Fatalf("wrote through the link: %v", e)
	}
}

// Bytes already at a path that are the layer's are adopted into the cache
// (no download needed); a cached blob that was changed is refused by
// InstallCached, which hashes every byte.
func TestAdoptAndVerifyCached(t *testing.T) {
	c := newCacheClient(t)
	big := bytes.Repeat([]byte("m"), linkThreshold+7)
	d := digest.FromBytes(big)
	dir := t.TempDir()
	p := filepath.Join(dir, "model.onnx.data")
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	files := []manifests.File{{Path: "model.onnx.data", MediaType: manifests.LayerMediaType("model.onnx.data"), Digest: d, Size: int64(len(big))}}
	adopted, err := c.Adopt(context.Background(), dir, files)
	if err != nil || len(adopted) != 1 {
		t.Fatalf("adopted %v, %v", adopted, err)
	}
	if !c.cache.HasBlob(d, int64(len(big))) {
		t.Fatal("not in the cache after adoption")
	}
	fi, _ := os.Stat(p)
	bi, _ := os.Stat(c.cache.BlobPath(d))
	if !os.SameFile(fi, bi) {
		t.Fatal("adopted file is not linked into the cache")
	}
	// A different file of the same size is not adopted.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "model.onnx.data"), bytes.Repeat([]byte("x"), len(big)), 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := newCacheClient(t)
	if adopted, err := c2.Adopt(context.Background(), other, files); err != nil || len(adopted) != 0 {
		t.Fatalf("adopted different bytes: %v %v", adopted, err)
	}

	// A cache blob whose bytes changed (same size, stamp forged) is caught.
	ref, raw := cachedArtifact(t, c2, map[string][]byte{"m.bin": []byte("right")})
	blob := c2.cache.BlobPath(digest.FromBytes([]byte("right")))
	fi, _ = os.Stat(blob)
	_ = os.Chmod(blob, 0o644)
	if err := os.WriteFile(blob, []byte("wrong"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(blob, fi.ModTime(), fi.ModTime())
	_, err = c2.InstallCached(context.Background(), ref, raw, t.TempDir())
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("changed cache blob: err %v", err)
	}
}

// Two installs within one second over a file kept by the first: the
// second keeps its own previous file under another name and never
// replaces the kept one (it did, and then removed it as a known version).
func TestInstallNeverReplacesAKeptFile(t *testing.T) {
	c := newCacheClient(t)
	ref1, raw1 := cachedArtifact(t, c, map[string][]byte{"a.bin": []byte("v1")})
	ref2, raw2 := cachedArtifact(t, c, map[string][]byte{"a.bin": []byte("v2")})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.bin"), []byte("edited by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	r1, err := c.InstallCached(context.Background(), ref1, raw1, dir)
	if err != nil || len(r1.Kept) != 1 {
		t.Fatalf("first install: %+v, %v", r1, err)
	}
	for _, fail := range []bool{true, false} {
		if fail {
			installFault = func(step, path string) error {
				if step == "receipt" {
					return errors.New("injected")
				}
				return nil
			}
		}
		_, err := c.InstallCached(context.Background(), ref2, raw2, dir)
		installFault = nil
		if (err != nil) != fail {
			t.Fatalf("second install (fault %v): %v", fail, err)
		}
		if b, err := os.ReadFile(r1.Kept[0]); err != nil || string(b) != "edited by hand" {
			t.Fatalf("the kept file after a second install (fault %v): %q, %v", fail, b, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.bin")); string(b) != "v2" {
		t.Fatalf("a.bin = %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "a.bin"+KeptSuffix+"*")); len(m) != 1 {
		t.Fatalf("kept files %v, want only the hand-edited one", m)
	}
}
