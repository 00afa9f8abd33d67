package manifests_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
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
	if fi, err := os.Stat(filepath.Join(target, "docs", "sub", "run.sh")); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm()&0o100 == 0 {
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

// kitLayer builds a layer the way kitops pkg/lib/filesystem/tar.go does: a
// tar+gzip of paths relative to the context directory, a directory entry
// before its files, owner 1000, no times.
func kitLayer(t *testing.T, entries [][2]string) (blob []byte, diffID digest.Digest) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Uid: 1000, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		if strings.HasSuffix(e[0], "/") {
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e[1]))
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return gz.Bytes(), digest.FromBytes(tarBuf.Bytes())
}

// TestModelKitLibraryRoundTrip classifies a ModelKit built to the KitOps
// spec (Kitfile config with per-layer digest and diffId, model, code and
// docs layers, a prompt), unpacks it and checks the files byte for byte.
func TestModelKitLibraryRoundTrip(t *testing.T) {
	model, modelDiff := kitLayer(t, [][2]string{{"models/", ""}, {"models/model.onnx", "graph"}, {"models/model.onnx.data", strings.Repeat("w", 70000)}})
	code, codeDiff := kitLayer(t, [][2]string{{"src/", ""}, {"src/infer.py", "print(1)"}})
	docs, docsDiff := kitLayer(t, [][2]string{{"README.md", "# kit"}})
	prompt, promptDiff := kitLayer(t, [][2]string{{"prompts/", ""}, {"prompts/system.txt", "be brief"}})
	blobs := map[digest.Digest][]byte{}
	var layers []ocispec.Descriptor
	for _, l := range []struct {
		kind string
		blob []byte
		ann  map[string]string
	}{{"model", model, nil}, {"code", code, nil}, {"docs", docs, nil}, {"code", prompt, map[string]string{manifests.AnnotationKitLayerSubtype: "prompt"}}} {
		d := digest.FromBytes(l.blob)
		blobs[d] = l.blob
		layers = append(layers, ocispec.Descriptor{MediaType: "application/vnd.kitops.modelkit." + l.kind + ".v1.tar+gzip", Digest: d, Size: int64(len(l.blob)), Annotations: l.ann})
	}
	kitfile := fmt.Sprintf(`{"manifestVersion":"1.0.0","package":{"name":"demo","version":"1.0.0","authors":["a"]},`+
		`"model":{"name":"m","path":"models","format":"onnx","digest":"%s","diffId":"%s"},`+
		`"code":[{"path":"src","digest":"%s","diffId":"%s"}],"docs":[{"path":"README.md","digest":"%s","diffId":"%s"}],`+
		`"prompts":[{"path":"prompts","digest":"%s","diffId":"%s"}]}`,
		layers[0].Digest, modelDiff, layers[1].Digest, codeDiff, layers[2].Digest, docsDiff, layers[3].Digest, promptDiff)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: manifests.ArtifactTypeKitManifest,
		Config:       ocispec.Descriptor{MediaType: manifests.MediaTypeKitConfig, Digest: digest.FromString(kitfile), Size: int64(len(kitfile))},
		Layers:       layers,
	}
	raw, _ := json.Marshal(m)
	c, err := manifests.Classify(raw, ocispec.MediaTypeImageManifest, manifests.ClassifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyConfig([]byte(kitfile)); err != nil {
		t.Fatal(err)
	}
	k, err := manifests.ParseKitfile(c.Kitfile)
	if err != nil || c.Kind != manifests.KindModelKit || k.Package.Name != "demo" || c.Layers[3].Role != "prompt" {
		t.Fatalf("kind %q Kitfile %+v (%v) roles %v", c.Kind, k, err, c.Layers)
	}
	target := t.TempDir()
	s, err := unpack.NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range c.Layers {
		if l.DiffID == "" {
			t.Fatalf("layer %d: no diffID from the Kitfile", l.Index)
		}
		if _, err := s.Unpack(context.Background(), bytes.NewReader(blobs[l.Descriptor.Digest]), unpack.LayerOf(l), unpack.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	for p, body := range map[string]string{"models/model.onnx": "graph", "models/model.onnx.data": strings.Repeat("w", 70000),
		"src/infer.py": "print(1)", "README.md": "# kit", "prompts/system.txt": "be brief"} {
		got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(p)))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q (%v)", p, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(target, manifests.ReservedDir)); err == nil {
		t.Errorf("the stage's reserved directory was left in the target")
	}
}
