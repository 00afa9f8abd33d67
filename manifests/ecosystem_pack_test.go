package manifests_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/internal/unpack"
	"github.com/modelctl/modelctl/manifests"
)

// TestPackArchivesRoundTrip packs a model as ModelPack tar layers, checks
// that pull's classification accepts the artifact, and unpacks the layers
// back into files identical to the source.
func TestPackArchivesRoundTrip(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"model.onnx":         "graph bytes",
		"model.onnx.data":    string(bytes.Repeat([]byte{1, 2, 3, 4}, 1<<18)),
		"docs/README.md":     "# model",
		"docs/sub/NOTICE":    "notice",
		"docs/sub/run.sh":    "#!/bin/sh\n",
		"docs/empty/.keep":   "",
		"tokenizer/vocab.js": "{}",
	}
	for p, body := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(src, "docs", "sub", "run.sh"), 0o755)
	parts := []struct {
		rel, raw string
		comp     manifests.Compression
	}{
		{"model.onnx", manifests.MediaTypeWeightRaw, manifests.CompressionGzip},
		{"model.onnx.data", manifests.MediaTypeWeightRaw, manifests.CompressionNone},
		{"docs", manifests.MediaTypeDocRaw, manifests.CompressionGzip},
		{"tokenizer", manifests.MediaTypeWeightConfigRaw, manifests.CompressionNone},
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	blobs := map[digest.Digest][]byte{}
	for _, p := range parts {
		var buf bytes.Buffer
		l, err := manifests.WriteTarLayer(&buf, src, p.rel, p.raw, p.comp)
		if err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if l2, err := manifests.WriteTarLayer(&again, src, p.rel, p.raw, p.comp); err != nil || l2.Digest != l.Digest {
			t.Fatalf("%s: packing twice gave %v and %v (%v)", p.rel, l.Digest, l2, err)
		}
		if l.Digest != digest.FromBytes(buf.Bytes()) || l.Size != int64(buf.Len()) {
			t.Fatalf("%s: descriptor does not describe the bytes written", p.rel)
		}
		d, err := l.Descriptor(src)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, l.DiffID)
		blobs[l.Digest] = buf.Bytes()
	}
	a, err := manifests.PackArchives(layers, diffIDs, manifests.PackOptions{Name: "tarred"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := manifests.Classify(a.Manifest, a.ManifestDesc.MediaType, manifests.ClassifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyConfig(a.Config); err != nil {
		t.Fatal(err)
	}
	if c.Kind != manifests.KindModelPack || !c.HasArchives() || len(c.Files()) != 0 {
		t.Fatalf("classified as %q, archives %v, files %v", c.Kind, c.HasArchives(), c.Files())
	}
	if c.Layers[0].UnpackedSize != int64(len(files["model.onnx"])) {
		t.Errorf("declared size %d", c.Layers[0].UnpackedSize)
	}
	target := filepath.Join(t.TempDir(), "pulled")
	s, err := unpack.NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, lp := range c.Layers {
		if _, err := s.Unpack(context.Background(), bytes.NewReader(blobs[lp.Descriptor.Digest]), unpack.LayerOf(lp), unpack.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	for p, body := range files {
		got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(p)))
		if err != nil || string(got) != body {
			t.Errorf("%s: %d bytes, want %d (%v)", p, len(got), len(body), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(target, "docs", "sub", "run.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("run.sh lost its execute bit: %v", err)
	}
}

func TestWriteTarLayerRefuses(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644)
	os.Symlink("a", filepath.Join(src, "link"))
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	os.Symlink("../a", filepath.Join(src, "d", "link"))
	for _, tc := range []struct{ rel, raw string }{
		{"link", manifests.MediaTypeWeightRaw},
		{"d", manifests.MediaTypeWeightRaw},
		{"../a", manifests.MediaTypeWeightRaw},
		{"a", "application/octet-stream"},
	} {
		if _, err := manifests.WriteTarLayer(&bytes.Buffer{}, src, tc.rel, tc.raw, manifests.CompressionGzip); err == nil {
			t.Errorf("%s (%s) packed", tc.rel, tc.raw)
		}
	}
	if _, err := manifests.WriteTarLayer(&bytes.Buffer{}, src, "a", manifests.MediaTypeWeightRaw, manifests.CompressionZstd); err == nil {
		t.Errorf("zstd packed")
	}
}
