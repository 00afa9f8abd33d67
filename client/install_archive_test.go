package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/unpack"
	"github.com/modelctl/modelctl/manifests"
)

// tarOf is an uncompressed tar of the given files and directories (a name
// ending in / is a directory).
func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e[1]))}
		if strings.HasSuffix(e[0], "/") {
			hdr = &tar.Header{Name: e[0], Typeflag: tar.TypeDir, Mode: 0o755}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The files of an archive layer are switched with the raw files under the
// same rules: an install that fails at any step, the receipt included,
// leaves the target as it was (it used to keep the archive's files,
// moved in before the receipt); a file of the previous install that is
// still as it was installed is replaced, one of unknown bytes is kept.
func TestInstallArchiveIsAllOrNothing(t *testing.T) {
	c := newCacheClient(t)
	ref, raw := cachedArtifact(t, c, map[string][]byte{"model.gguf": []byte("new weights")})
	m, err := manifests.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	files := m.Files
	layer := tarOf(t, [2]string{"tokenizer/", ""}, [2]string{"tokenizer/vocab.json", "new vocab"},
		[2]string{"config.json", "new config"}, [2]string{"empty/", ""})

	setup := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "app", "models")
		if err := os.MkdirAll(filepath.Join(dir, "tokenizer"), 0o755); err != nil {
			t.Fatal(err)
		}
		for p, b := range map[string]string{"config.json": "old config", "tokenizer/vocab.json": "edited by hand", "keep.txt": "mine"} {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// The previous install put config.json there, as it still is.
		rc := Receipt{Reference: "old", Digest: digest.FromString("old"), Files: []ReceiptFile{
			{Path: "config.json", Digest: digest.FromString("old config"), Size: 10},
			{Path: "tokenizer/vocab.json", Digest: digest.FromString("old vocab"), Size: 9}}}
		b, _ := json.Marshal(rc)
		if err := os.MkdirAll(filepath.Join(dir, manifests.ReservedDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ReceiptPath)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	install := func(t *testing.T, dir string) (*PullResult, error) {
		stage, err := unpack.NewStage(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer stage.Discard()
		for _, f := range files {
			if err := stage.Claim(f.Path); err != nil {
				t.Fatal(err)
			}
		}
		u, err := stage.Unpack(context.Background(), bytes.NewReader(layer), unpack.Layer{Name: "layer 1",
			Digest: digest.FromBytes(layer), Size: int64(len(layer)), UnpackedSize: -1}, unpack.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return c.installFiles(context.Background(), ref, ref.Digest, files, dir, nil, &archiveSet{stage: stage, files: u})
	}

	failEachStep(t, 8, setup, func(t *testing.T, dir string) error {
		_, err := install(t, dir)
		return err
	})

	dir := setup(t)
	res, err := install(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, dir)
	if got["model.gguf"] != "new weights" || got["config.json"] != "new config" || got[filepath.FromSlash("tokenizer/vocab.json")] != "new vocab" ||
		got["keep.txt"] != "mine" || got["empty"] != "dir" {
		t.Fatalf("installed: %v", got)
	}
	if len(res.Kept) != 1 || !strings.HasPrefix(filepath.Base(res.Kept[0]), "vocab.json"+KeptSuffix) {
		t.Fatalf("kept %v, want only tokenizer/vocab.json (edited by hand) moved aside", res.Kept)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "config.json"+KeptSuffix+"*")); len(m) != 0 {
		t.Fatalf("the previous install's unchanged file was kept: %v", m)
	}
	rc, err := ReadReceipt(dir)
	if err != nil || len(rc.Files) != 3 {
		t.Fatalf("receipt: %+v, %v", rc, err)
	}
}
