package manifests

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func desc(mt, content string, ann map[string]string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(content), Size: int64(len(content)), Annotations: ann}
}

func title(p string) map[string]string { return map[string]string{AnnotationTitle: p} }

func manifestJSON(t testing.TB, m ocispec.Manifest) []byte {
	t.Helper()
	if m.SchemaVersion == 0 {
		m.Versioned = specs.Versioned{SchemaVersion: 2}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// orasEmptyConfig is the config `oras push` writes without --config.
var orasEmptyConfig = ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromString("{}"), Size: 2}

func TestClassifyAccepts(t *testing.T) {
	kitCfg := desc(MediaTypeKitConfig, `{"manifestVersion":"1.0.0"}`, nil)
	mpCfg := desc(MediaTypeConfig, `{}`, nil)
	fileMeta := `{"name":"model.onnx","mode":420,"uid":0,"gid":0,"size":12345,"mtime":"2025-01-01T00:00:00Z","typeflag":0}`
	type want struct {
		role   string
		format LayerFormat
		comp   Compression
		path   string
		size   int64
	}
	tests := []struct {
		name    string
		m       ocispec.Manifest
		opts    ClassifyOptions
		kind    ArtifactKind
		layers  []want
		kitfile string
	}{
		{
			name: "oras push with its defaults",
			m: ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeORASUnknown, Config: orasEmptyConfig,
				Layers: []ocispec.Descriptor{
					desc("application/vnd.oci.image.layer.v1.tar", "graph", title("model.onnx")),
					desc("application/vnd.oci.image.layer.v1.tar", "data", title("model.onnx.data")),
				}},
			kind: KindFiles,
			layers: []want{
				{"file", LayerRaw, CompressionNone, "model.onnx", -1},
				{"file", LayerRaw, CompressionNone, "model.onnx.data", -1},
			},
		},
		{
			name: "oras push of a directory",
			m: ocispec.Manifest{ArtifactType: "application/x-anything", Config: orasEmptyConfig,
				Layers: []ocispec.Descriptor{
					desc("application/vnd.oci.image.layer.v1.tar+gzip", "dir", map[string]string{AnnotationTitle: "weights", AnnotationORASUnpack: "true"}),
				}},
			kind:   KindFiles,
			layers: []want{{"directory", LayerTar, CompressionGzip, "weights", -1}},
		},
		{
			name: "single unnamed layer named by --name",
			m: ocispec.Manifest{Config: orasEmptyConfig,
				Layers: []ocispec.Descriptor{desc("application/octet-stream", "x", nil)}},
			opts:   ClassifyOptions{Name: "model.gguf"},
			kind:   KindFiles,
			layers: []want{{"file", LayerRaw, CompressionNone, "model.gguf", -1}},
		},
		{
			name: "ModelPack archives of every kind and compression",
			m: ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeModel, Config: mpCfg,
				Layers: []ocispec.Descriptor{
					desc(MediaTypeWeightTarGzip, "w", map[string]string{AnnotationFilepath: "model.onnx", AnnotationFileMetadata: fileMeta}),
					desc(MediaTypeWeightConfigTarZstd, "wc", map[string]string{AnnotationFilepath: "config.json"}),
					desc(MediaTypeDocTar, "d", map[string]string{AnnotationFilepath: "README.md"}),
					desc(MediaTypeCodeTarGzip, "c", nil),
					desc(MediaTypeDatasetTarZstd, "ds", nil),
					desc(MediaTypeWeightRaw, "raw", map[string]string{AnnotationFilepath: "extra.bin"}),
				}},
			kind: KindModelPack,
			layers: []want{
				{"weight", LayerTar, CompressionGzip, "model.onnx", 12345},
				{"weight.config", LayerTar, CompressionZstd, "config.json", -1},
				{"doc", LayerTar, CompressionNone, "README.md", -1},
				{"code", LayerTar, CompressionGzip, "", -1},
				{"dataset", LayerTar, CompressionZstd, "", -1},
				{"weight", LayerRaw, CompressionNone, "extra.bin", -1},
			},
		},
		{
			name: "KitOps ModelKit",
			m: ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: kitCfg,
				Layers: []ocispec.Descriptor{
					desc("application/vnd.kitops.modelkit.model.v1.tar+gzip", "m", nil),
					desc("application/vnd.kitops.modelkit.modelpart.v1.tar", "mp", nil),
					desc("application/vnd.kitops.modelkit.code.v1.tar+gzip", "c", nil),
					desc("application/vnd.kitops.modelkit.code.v1.tar+gzip", "p", map[string]string{AnnotationKitLayerSubtype: "prompt"}),
					desc("application/vnd.kitops.modelkit.dataset.v1.tar+zstd", "ds", nil),
					desc("application/vnd.kitops.modelkit.docs.v1.tar", "d", nil),
					desc("application/vnd.kitops.modelkit.model.v1.raw", "r", map[string]string{AnnotationFilepath: "tokenizer.json"}),
				}},
			kind: KindModelKit,
			layers: []want{
				{"model", LayerTar, CompressionGzip, "", -1},
				{"modelpart", LayerTar, CompressionNone, "", -1},
				{"code", LayerTar, CompressionGzip, "", -1},
				{"prompt", LayerTar, CompressionGzip, "", -1},
				{"dataset", LayerTar, CompressionZstd, "", -1},
				{"docs", LayerTar, CompressionNone, "", -1},
				{"model", LayerRaw, CompressionNone, "tokenizer.json", -1},
			},
		},
		{
			name: "ModelKit packed in the ModelPack format keeps its Kitfile in an annotation",
			m: ocispec.Manifest{ArtifactType: ArtifactTypeModel, Config: mpCfg,
				Annotations: map[string]string{AnnotationKitfile: `{"manifestVersion":"1.0.0","package":{"name":"x"}}`},
				Layers:      []ocispec.Descriptor{desc(MediaTypeWeightTar, "w", map[string]string{AnnotationFilepath: "model"})}},
			kind:    KindModelPack,
			layers:  []want{{"weight", LayerTar, CompressionNone, "model", -1}},
			kitfile: `{"manifestVersion":"1.0.0","package":{"name":"x"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Classify(manifestJSON(t, tt.m), "", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != tt.kind {
				t.Errorf("kind %q, want %q", c.Kind, tt.kind)
			}
			if len(c.Layers) != len(tt.layers) {
				t.Fatalf("%d layers, want %d", len(c.Layers), len(tt.layers))
			}
			for i, w := range tt.layers {
				l := c.Layers[i]
				got := want{l.Role, l.Format, l.Compression, l.Path, l.UnpackedSize}
				if got != w {
					t.Errorf("layer %d: %+v, want %+v", i, got, w)
				}
				if l.Index != i || l.Descriptor.Digest != tt.m.Layers[i].Digest {
					t.Errorf("layer %d: index %d digest %s", i, l.Index, l.Descriptor.Digest)
				}
				// Uncompressed layers are their own diffID; compressed ones wait for the config.
				if wantDiff := l.Compression == CompressionNone; (l.DiffID == l.Descriptor.Digest) != wantDiff {
					t.Errorf("layer %d: diffID %q", i, l.DiffID)
				}
			}
			if string(c.Kitfile) != tt.kitfile {
				t.Errorf("Kitfile %q, want %q", c.Kitfile, tt.kitfile)
			}
			if c.Native {
				t.Errorf("Native for an artifact ParseManifest refuses")
			}
		})
	}
}

// TestClassifyModelctlArtifact checks that modelctl's own artifacts keep
// their path: Native, ModelPack, the same files ParseManifest gives.
func TestClassifyModelctlArtifact(t *testing.T) {
	a, err := Pack(sampleFiles(), PackOptions{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Classify(a.Manifest, ocispec.MediaTypeImageManifest+"; charset=utf-8", ClassifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Native || c.Kind != KindModelPack || c.HasArchives() {
		t.Fatalf("native %v kind %q archives %v", c.Native, c.Kind, c.HasArchives())
	}
	if !reflect.DeepEqual(c.Files(), m.Files) {
		t.Fatalf("files %+v, ParseManifest %+v", c.Files(), m.Files)
	}
	if err := c.ApplyConfig(a.Config); err != nil {
		t.Fatal(err)
	}
}

func TestClassifyRefuses(t *testing.T) {
	imageLayer := desc("application/vnd.oci.image.layer.v1.tar+gzip", "rootfs", nil)
	tests := []struct {
		name      string
		data      []byte
		mediaType string
		opts      ClassifyOptions
		want      string
		notFile   bool
		unnamed   bool
	}{
		{name: "OCI container image", notFile: true, want: "a container image (config application/vnd.oci.image.config.v1+json",
			data: manifestJSON(t, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
				Config: desc(ocispec.MediaTypeImageConfig, "cfg", nil), Layers: []ocispec.Descriptor{imageLayer, imageLayer}})},
		{name: "Docker image", notFile: true, want: "a container image (config application/vnd.docker.container.image.v1+json, layers 1× application/vnd.docker.image.rootfs.diff.tar.gzip",
			data: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + string(digest.FromString("c")) + `","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"` + string(digest.FromString("l")) + `","size":1}]}`)},
		{name: "OCI index", notFile: true, want: "an image index (application/vnd.oci.image.index.v1+json listing 1 manifests",
			data: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + string(digest.FromString("m")) + `","size":1}]}`)},
		{name: "index known only by the served media type", notFile: true, want: "an image index", mediaType: ocispec.MediaTypeImageIndex,
			data: []byte(`{"schemaVersion":2,"manifests":[]}`)},
		{name: "Docker manifest list", notFile: true, want: "an image index",
			data: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`)},
		{name: "schema 1", notFile: true, want: "Docker schema 1", data: []byte(`{"schemaVersion":1,"fsLayers":[]}`)},
		{name: "image layers without a config type we know", notFile: true, want: "container image or filesystem bundle",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{imageLayer, imageLayer}})},
		{name: "single unnamed layer", unnamed: true, want: "pass --name FILE",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{desc("application/octet-stream", "x", nil)}})},
		{name: "--name that escapes", opts: ClassifyOptions{Name: "../x"}, want: "--name",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{desc("application/octet-stream", "x", nil)}})},
		{name: "two layers, one unnamed", unnamed: true, want: "1 of 2 layers name no file",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{
				desc("application/octet-stream", "x", title("a")), desc("application/octet-stream", "y", nil)}})},
		{name: "escaping title", want: "is absolute",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{desc("application/octet-stream", "x", title("/etc/passwd"))}})},
		{name: "two layers one path", want: "are the same file",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{
				desc("application/octet-stream", "x", title("Model.onnx")), desc("application/octet-stream", "y", title("model.onnx"))}})},
		{name: "archive root is a raw file's path", want: "are the same path",
			data: manifestJSON(t, ocispec.Manifest{Config: desc(MediaTypeConfig, "{}", nil), Layers: []ocispec.Descriptor{
				desc(MediaTypeWeightRaw, "x", title("model.onnx")), desc(MediaTypeWeightTarGzip, "y", title("model.onnx"))}})},
		{name: "compressed raw ModelPack layer", want: "not a layer type of the ModelPack or KitOps spec",
			data: manifestJSON(t, ocispec.Manifest{Config: desc(MediaTypeConfig, "{}", nil), Layers: []ocispec.Descriptor{
				desc("application/vnd.cncf.model.weight.v1.raw+gzip", "x", title("m"))}})},
		{name: "unknown KitOps kind", want: "not a layer type",
			data: manifestJSON(t, ocispec.Manifest{Config: desc(MediaTypeKitConfig, "{}", nil), Layers: []ocispec.Descriptor{
				desc("application/vnd.kitops.modelkit.weights.v1.tar", "x", nil)}})},
		{name: "no layers", want: "no layers",
			data: manifestJSON(t, ocispec.Manifest{Config: orasEmptyConfig})},
		{name: "served type disagrees", mediaType: "application/vnd.oci.image.manifest.v1+json", want: "served as",
			data: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}`)},
		{name: "bad layer digest", want: "only sha256",
			data: []byte(`{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + string(digest.FromString("c")) + `","size":1},"layers":[{"mediaType":"x","digest":"md5:00","size":1,"annotations":{"org.opencontainers.image.title":"a"}}]}`)},
		{name: "not JSON", want: "not valid JSON", data: []byte(`{`)},
		{name: "Kitfile annotation not JSON", want: "not JSON",
			data: manifestJSON(t, ocispec.Manifest{Config: desc(MediaTypeConfig, "{}", nil), Annotations: map[string]string{AnnotationKitfile: "{"},
				Layers: []ocispec.Descriptor{desc(MediaTypeWeightTar, "x", nil)}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Classify(tt.data, tt.mediaType, tt.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			var nf *NotFileArtifactError
			if errors.As(err, &nf) != tt.notFile {
				t.Errorf("NotFileArtifactError: %v, want %v (%v)", !tt.notFile, tt.notFile, err)
			}
			if errors.Is(err, ErrUnnamedLayer) != tt.unnamed {
				t.Errorf("ErrUnnamedLayer: want %v (%v)", tt.unnamed, err)
			}
		})
	}
}

func TestParseLayerMediaType(t *testing.T) {
	// Every layer constant of model-spec specs-go/v1/mediatype.go.
	modelPack := map[string][3]string{
		MediaTypeWeightRaw: {"weight", "raw", ""}, MediaTypeWeightTar: {"weight", "tar", ""}, MediaTypeWeightTarGzip: {"weight", "tar", "gzip"}, MediaTypeWeightTarZstd: {"weight", "tar", "zstd"},
		MediaTypeWeightConfigRaw: {"weight.config", "raw", ""}, MediaTypeWeightConfigTar: {"weight.config", "tar", ""}, MediaTypeWeightConfigTarGzip: {"weight.config", "tar", "gzip"}, MediaTypeWeightConfigTarZstd: {"weight.config", "tar", "zstd"},
		MediaTypeDocRaw: {"doc", "raw", ""}, MediaTypeDocTar: {"doc", "tar", ""}, MediaTypeDocTarGzip: {"doc", "tar", "gzip"}, MediaTypeDocTarZstd: {"doc", "tar", "zstd"},
		MediaTypeCodeRaw: {"code", "raw", ""}, MediaTypeCodeTar: {"code", "tar", ""}, MediaTypeCodeTarGzip: {"code", "tar", "gzip"}, MediaTypeCodeTarZstd: {"code", "tar", "zstd"},
		MediaTypeDatasetRaw: {"dataset", "raw", ""}, MediaTypeDatasetTar: {"dataset", "tar", ""}, MediaTypeDatasetTarGzip: {"dataset", "tar", "gzip"}, MediaTypeDatasetTarZstd: {"dataset", "tar", "zstd"},
		"application/vnd.kitops.modelkit.model.v1.tar+gzip":     {"model", "tar", "gzip"},
		"application/vnd.kitops.modelkit.modelpart.v1.tar+zstd": {"modelpart", "tar", "zstd"},
		"application/vnd.kitops.modelkit.docs.v1.raw":           {"docs", "raw", ""},
	}
	for mt, w := range modelPack {
		role, format, comp, ok := ParseLayerMediaType(mt)
		if !ok || role != w[0] || string(format) != w[1] || string(comp) != w[2] {
			t.Errorf("%s: %q %q %q %v, want %v", mt, role, format, comp, ok, w)
		}
	}
	for _, mt := range []string{
		"application/vnd.cncf.model.weight.v1.raw+gzip", "application/vnd.cncf.model.weight.v2.tar",
		"application/vnd.cncf.model.weight.v1.tar+bzip2", "application/vnd.cncf.model.config.v1+json",
		"application/vnd.kitops.modelkit.config.v1+json", "application/vnd.kitops.modelkit.model.v1.zip",
		"application/vnd.oci.image.layer.v1.tar", "", "application/vnd.cncf.model..v1.tar",
	} {
		if _, _, _, ok := ParseLayerMediaType(mt); ok {
			t.Errorf("%q accepted", mt)
		}
	}
}

func TestApplyConfig(t *testing.T) {
	gz := desc(MediaTypeWeightTarGzip, "gz", map[string]string{AnnotationFilepath: "model.onnx"})
	raw := desc(MediaTypeDocRaw, "readme", title("README.md"))
	tarDiff := digest.FromString("the uncompressed tar")
	mpConfig := func(ids ...digest.Digest) []byte {
		b, _ := MarshalConfig(&Model{ModelFS: ModelFS{Type: "layers", DiffIDs: ids}})
		return b
	}
	kitConfig := func(layerDigest, diffID string) []byte {
		return []byte(`{"manifestVersion":"1.0.0","package":{"name":"k"},"model":{"path":"model.onnx","digest":"` + layerDigest + `","diffId":"` + diffID + `"}}`)
	}
	kitLayer := desc("application/vnd.kitops.modelkit.model.v1.tar+gzip", "kit", nil)
	tests := []struct {
		name   string
		layers []ocispec.Descriptor
		cfgMT  string
		config []byte
		want   string // error substring, "" for success
		diff   digest.Digest
	}{
		{name: "ModelPack diffIds name the uncompressed tar", layers: []ocispec.Descriptor{gz, raw}, cfgMT: MediaTypeConfig,
			config: mpConfig(tarDiff, raw.Digest), diff: tarDiff},
		{name: "ModelPack raw diffId must be the layer digest", layers: []ocispec.Descriptor{gz, raw}, cfgMT: MediaTypeConfig,
			config: mpConfig(tarDiff, tarDiff), want: "is uncompressed"},
		{name: "ModelPack diffIds count", layers: []ocispec.Descriptor{gz, raw}, cfgMT: MediaTypeConfig,
			config: mpConfig(tarDiff), want: "1 diffIds for 2 layers"},
		{name: "Kitfile diffId", layers: []ocispec.Descriptor{kitLayer}, cfgMT: MediaTypeKitConfig,
			config: kitConfig(string(kitLayer.Digest), string(tarDiff)), diff: tarDiff},
		{name: "Kitfile names a layer that is not there", layers: []ocispec.Descriptor{kitLayer}, cfgMT: MediaTypeKitConfig,
			config: kitConfig(string(tarDiff), string(tarDiff)), want: "not in the manifest"},
		{name: "Kitfile without manifestVersion", layers: []ocispec.Descriptor{kitLayer}, cfgMT: MediaTypeKitConfig,
			config: []byte(`{"package":{}}`), want: "manifestVersion"},
		{name: "ORAS config is not interpreted", layers: []ocispec.Descriptor{raw}, cfgMT: "application/vnd.oci.empty.v1+json",
			config: []byte(`{}`), diff: raw.Digest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ocispec.Descriptor{MediaType: tt.cfgMT, Digest: digest.FromBytes(tt.config), Size: int64(len(tt.config))}
			c, err := Classify(manifestJSON(t, ocispec.Manifest{Config: cfg, Layers: tt.layers}), "", ClassifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = c.ApplyConfig(tt.config)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Layers[0].DiffID != tt.diff {
				t.Errorf("diffID %q, want %q", c.Layers[0].DiffID, tt.diff)
			}
			if tt.cfgMT == MediaTypeKitConfig {
				k, err := ParseKitfile(c.Kitfile)
				if err != nil || k.Package.Name != "k" || k.Model.Path != "model.onnx" {
					t.Errorf("Kitfile %+v %v", k, err)
				}
			}
			if err := c.ApplyConfig(append(tt.config, ' ')); err == nil {
				t.Errorf("a config that is not the described blob was accepted")
			}
		})
	}
}

// FuzzClassify checks that no manifest panics Classify and that every file
// it accepts stays inside the install directory.
func FuzzClassify(f *testing.F) {
	a, err := Pack(sampleFiles(), PackOptions{Name: "seed"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a.Manifest, "")
	f.Add(manifestJSON(f, ocispec.Manifest{Config: orasEmptyConfig, Layers: []ocispec.Descriptor{
		desc(MediaTypeWeightTarGzip, "x", title("m")), desc("application/octet-stream", "y", title("a/b"))}}), ocispec.MediaTypeImageManifest)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), ocispec.MediaTypeImageIndex)
	f.Fuzz(func(t *testing.T, data []byte, mt string) {
		c, err := Classify(data, mt, ClassifyOptions{})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, l := range c.Layers {
			if l.Path != "" {
				assertInside(t, l.Path)
			}
		}
		_ = c.ApplyConfig(data)
	})
}
