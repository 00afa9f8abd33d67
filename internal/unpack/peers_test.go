package unpack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/internal/unpack"
	"github.com/modelctl/modelctl/manifests"
)

// These tests make artifacts with the peer tools themselves (oras from
// `make tools`, GNU tar) into an OCI image layout on disk, and check that
// what they wrote classifies as expected and installs byte-identical to
// the source files. No registry is involved: the layout holds the same
// manifest and blobs a push would send.

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// layout reads the manifest tagged tag from an OCI image layout.
func layout(t *testing.T, dir, tag string) (manifest []byte, mediaType string, blob func(digest.Digest) []byte) {
	t.Helper()
	blob = func(d digest.Digest) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var idx ocispec.Index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &idx)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			return blob(m.Digest), m.MediaType, blob
		}
	}
	t.Fatalf("no manifest tagged %s in %s", tag, dir)
	return nil, "", nil
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// install does what pull will: raw layers claimed (their blob is the
// file), archives unpacked, then one commit.
func install(t *testing.T, c *manifests.Classification, blob func(digest.Digest) []byte, target string) {
	t.Helper()
	s, err := unpack.NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range c.Layers {
		if !l.IsArchive() {
			if err := s.Claim(l.Path); err != nil {
				t.Fatal(err)
			}
			full := filepath.Join(target, filepath.FromSlash(l.Path))
			os.MkdirAll(filepath.Dir(full), 0o755)
			if err := os.WriteFile(full, blob(l.Descriptor.Digest), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b := blob(l.Descriptor.Digest)
		if _, err := s.Unpack(context.Background(), bytes.NewReader(b), unpack.LayerOf(l), unpack.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
}

func sameFiles(t *testing.T, target string, want map[string]string) {
	t.Helper()
	n := 0
	filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if n != len(want) {
		t.Errorf("%d files installed, want %d", n, len(want))
	}
	for p, body := range want {
		got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(p)))
		if err != nil || string(got) != body {
			t.Errorf("%s: %d bytes (%v), want %d", p, len(got), err, len(body))
		}
	}
}

func TestPeerArtifacts(t *testing.T) {
	oras := testenv.Tool(t, "oras")
	weights := strings.Repeat("\x00\x01weights\xff", 50000)
	model := map[string]string{"model.onnx": "graph", "model.onnx.data": weights}
	modelpackConfig := `{"descriptor":{"name":"m"},"modelfs":{"type":"layers","diffIds":["DIFF"]},"config":{"format":"onnx"}}`

	tests := []struct {
		name  string
		make  func(t *testing.T, src string) // writes ./layout:v1 in src
		kind  manifests.ArtifactKind
		roles []string
		files map[string]string
	}{
		{
			name: "oras push with its defaults",
			make: func(t *testing.T, src string) {
				writeFiles(t, src, model)
				run(t, src, oras, "push", "--oci-layout", "layout:v1", "model.onnx", "model.onnx.data")
			},
			kind: manifests.KindFiles, roles: []string{"file", "file"}, files: model,
		},
		{
			name: "oras push of a directory",
			make: func(t *testing.T, src string) {
				writeFiles(t, src, map[string]string{"weights/model.onnx": "graph", "weights/sub/model.onnx.data": weights})
				run(t, src, oras, "push", "--oci-layout", "layout:v1", "weights")
			},
			kind: manifests.KindFiles, roles: []string{"directory"},
			files: map[string]string{"weights/model.onnx": "graph", "weights/sub/model.onnx.data": weights},
		},
		{
			name: "ModelPack tar+gzip made with tar and oras",
			make: func(t *testing.T, src string) {
				writeFiles(t, src, map[string]string{"m/model.onnx": "graph", "m/model.onnx.data": weights})
				run(t, src, "tar", "cf", "weights.tar", "-C", "m", "model.onnx", "model.onnx.data")
				tarBytes, _ := os.ReadFile(filepath.Join(src, "weights.tar"))
				run(t, src, "gzip", "-n", "weights.tar")
				cfg := strings.Replace(modelpackConfig, "DIFF", digest.FromBytes(tarBytes).String(), 1)
				writeFiles(t, src, map[string]string{"config.json": cfg})
				run(t, src, oras, "push", "--oci-layout", "layout:v1", "--artifact-type", manifests.ArtifactTypeModel,
					"--config", "config.json:"+manifests.MediaTypeConfig, "weights.tar.gz:"+manifests.MediaTypeWeightTarGzip)
			},
			kind: manifests.KindModelPack, roles: []string{"weight"}, files: model,
		},
		{
			name: "KitOps ModelKit made with tar and oras",
			make: func(t *testing.T, src string) {
				writeFiles(t, src, map[string]string{"ctx/models/model.onnx": "graph", "ctx/models/model.onnx.data": weights, "ctx/README.md": "# kit"})
				run(t, src, "tar", "czf", "model.tgz", "-C", "ctx", "models")
				run(t, src, "tar", "cf", "docs.tar", "-C", "ctx", "README.md")
				writeFiles(t, src, map[string]string{"Kitfile.json": `{"manifestVersion":"1.0.0","package":{"name":"demo"},"model":{"path":"models"},"docs":[{"path":"README.md"}]}`})
				run(t, src, oras, "push", "--oci-layout", "layout:v1", "--artifact-type", manifests.ArtifactTypeKitManifest,
					"--config", "Kitfile.json:"+manifests.MediaTypeKitConfig,
					"model.tgz:application/vnd.kitops.modelkit.model.v1.tar+gzip", "docs.tar:application/vnd.kitops.modelkit.docs.v1.tar")
			},
			kind: manifests.KindModelKit, roles: []string{"model", "docs"},
			files: map[string]string{"models/model.onnx": "graph", "models/model.onnx.data": weights, "README.md": "# kit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			tt.make(t, src)
			raw, mt, blob := layout(t, filepath.Join(src, "layout"), "v1")
			c, err := manifests.Classify(raw, mt, manifests.ClassifyOptions{})
			if err != nil {
				t.Fatalf("%v\n%s", err, raw)
			}
			var m ocispec.Manifest
			json.Unmarshal(raw, &m)
			if err := c.ApplyConfig(blob(m.Config.Digest)); err != nil {
				t.Fatal(err)
			}
			if c.Kind != tt.kind || len(c.Layers) != len(tt.roles) {
				t.Fatalf("kind %q with %d layers, want %q with %d", c.Kind, len(c.Layers), tt.kind, len(tt.roles))
			}
			for i, r := range tt.roles {
				if c.Layers[i].Role != r {
					t.Errorf("layer %d: role %q, want %q", i, c.Layers[i].Role, r)
				}
			}
			if tt.kind == manifests.KindModelPack && c.Layers[0].DiffID == "" {
				t.Errorf("the config's diffId was not taken")
			}
			if tt.kind == manifests.KindModelKit && !strings.Contains(string(c.Kitfile), `"demo"`) {
				t.Errorf("Kitfile %q", c.Kitfile)
			}
			target := filepath.Join(t.TempDir(), "pulled")
			install(t, c, blob, target)
			sameFiles(t, target, tt.files)
		})
	}
}
