package manifests

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestValidatePath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"model.onnx", true},
		{"sub/dir/model.onnx.data", true},
		{"weights-0001.bin", true},
		{".hidden", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{".", false},
		{"..", false},
		{`a\..\..\x`, false},
		{`..\x`, false},
		{"C:/x", false},
		{"C:x", false},
		{"file.txt:stream", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a/b.", false},
		{"a /b", false},
		{"CON", false},
		{"dir/nul.txt", false},
		{"com1.onnx", false},
		{"console.onnx", true},
		{".modelctl/receipt.json", false},
		{".MODELCTL/x", false},
		{"x/.modelctl", true},
		{"\xff\xfe", false},
		{strings.Repeat("a", MaxPathLen+1), false},
	}
	for _, tt := range tests {
		err := ValidatePath(tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("ValidatePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePath(%q) error %v does not wrap ErrInvalid", tt.path, err)
		}
	}
}

func TestCheckPathSet(t *testing.T) {
	tests := []struct {
		paths []string
		ok    bool
	}{
		{[]string{"model.onnx", "model.onnx.data"}, true},
		{[]string{"a/b", "a/c", "d"}, true},
		{[]string{"model.onnx", "model.onnx"}, false},
		{[]string{"Model.onnx", "model.ONNX"}, false},
		{[]string{"a", "a/b"}, false},
		{[]string{"a/b", "A"}, false},
		{[]string{"x/y/z", "X/Y"}, false},
	}
	for _, tt := range tests {
		var files []File
		for _, p := range tt.paths {
			files = append(files, File{Path: p})
		}
		err := CheckPathSet(files)
		if (err == nil) != tt.ok {
			t.Errorf("CheckPathSet(%q) = %v, want ok=%v", tt.paths, err, tt.ok)
		}
	}
}

func sampleFiles() []File {
	return []File{
		{Path: "model.onnx", Digest: digest.FromString("graph"), Size: 5},
		{Path: "model.onnx.data", Digest: digest.FromString("weights"), Size: 7},
		{Path: "README.md", Digest: digest.FromString("doc"), Size: 3},
	}
}

func TestPackRoundTrip(t *testing.T) {
	created := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	a, err := Pack(sampleFiles(), PackOptions{
		Name: "audio-core", Version: "1", Precision: "int8", CreatedAt: created,
		Quantization: &Quantization{Method: "dynamic", Parameters: map[string]string{"per_channel": "true"}},
		Annotations:  map[string]string{AnnotationParentDigest: digest.FromString("parent").String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ArtifactTypeModel || m.Config.MediaType != MediaTypeConfig {
		t.Fatalf("artifactType %q config %q", m.ArtifactType, m.Config.MediaType)
	}
	wantTypes := []string{MediaTypeWeightRaw, MediaTypeWeightRaw, MediaTypeDocRaw}
	for i, f := range m.Files {
		if f.Path != sampleFiles()[i].Path || f.MediaType != wantTypes[i] || f.Digest != sampleFiles()[i].Digest {
			t.Errorf("file %d = %+v", i, f)
		}
		if m.Layers[i].Annotations[AnnotationTitle] != f.Path || m.Layers[i].Annotations[AnnotationFilepath] != f.Path {
			t.Errorf("layer %d annotations %v", i, m.Layers[i].Annotations)
		}
	}
	if got := m.Annotations[AnnotationCreatedAt]; got != "2026-11-25T21:00:00Z" {
		t.Errorf("created = %q", got)
	}
	if a.ManifestDesc.Digest != digest.FromBytes(a.Manifest) {
		t.Errorf("manifest digest mismatch")
	}
	model, err := ParseConfig(a.Config, &m.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if model.Config.Format != "onnx" || model.Config.Precision != "int8" || model.Config.Quantization != "dynamic" ||
		model.Config.QuantizationParameters["per_channel"] != "true" || model.ModelFS.Type != "layers" ||
		len(model.ModelFS.DiffIDs) != 3 || model.Descriptor.Name != "audio-core" || !model.Descriptor.CreatedAt.Equal(created) {
		t.Errorf("config = %+v", model)
	}
	// ModelPack's own Go type has quantization as a string: our config must
	// decode into that shape.
	var strict struct {
		Config struct {
			Quantization string `json:"quantization"`
		} `json:"config"`
	}
	if err := json.Unmarshal(a.Config, &strict); err != nil || strict.Config.Quantization != "dynamic" {
		t.Errorf("ModelPack-shaped decode: %v %q", err, strict.Config.Quantization)
	}
	// Same input, same bytes: a re-push of an unchanged model is idempotent.
	b, _ := Pack(sampleFiles(), PackOptions{Name: "audio-core", Version: "1", Precision: "int8", CreatedAt: created,
		Quantization: &Quantization{Method: "dynamic", Parameters: map[string]string{"per_channel": "true"}},
		Annotations:  map[string]string{AnnotationParentDigest: digest.FromString("parent").String()}})
	if string(a.Manifest) != string(b.Manifest) {
		t.Errorf("Pack is not deterministic")
	}
}

func TestPackRefusesForeignAnnotation(t *testing.T) {
	_, err := Pack(sampleFiles(), PackOptions{Annotations: map[string]string{"com.example.x": "1"}})
	if err == nil {
		t.Fatal("foreign annotation accepted")
	}
}

func TestParseManifestRejects(t *testing.T) {
	a, err := Pack(sampleFiles(), PackOptions{CreatedAt: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m *ocispec.Manifest)) []byte {
		var m ocispec.Manifest
		if err := json.Unmarshal(a.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not json", []byte("{"), "not valid JSON"},
		{"schema", mutate(func(m *ocispec.Manifest) { m.SchemaVersion = 1 }), "schemaVersion"},
		{"index", mutate(func(m *ocispec.Manifest) { m.MediaType = ocispec.MediaTypeImageIndex }), "mediaType"},
		{"artifact type", mutate(func(m *ocispec.Manifest) { m.ArtifactType = "application/x" }), "artifactType"},
		{"config type", mutate(func(m *ocispec.Manifest) { m.Config.MediaType = ocispec.MediaTypeImageConfig }), "config mediaType"},
		{"config too big", mutate(func(m *ocispec.Manifest) { m.Config.Size = MaxConfigSize + 1 }), "limit"},
		{"no layers", mutate(func(m *ocispec.Manifest) { m.Layers = nil }), "no layers"},
		{"tar layer", mutate(func(m *ocispec.Manifest) { m.Layers[0].MediaType = ocispec.MediaTypeImageLayerGzip }), "not a raw"},
		{"bad digest", mutate(func(m *ocispec.Manifest) { m.Layers[0].Digest = "sha256:abc" }), "digest"},
		{"sha512", mutate(func(m *ocispec.Manifest) { m.Layers[0].Digest = digest.Digest("sha512:" + strings.Repeat("ab", 64)) }), "only sha256"},
		{"negative size", mutate(func(m *ocispec.Manifest) { m.Layers[0].Size = -1 }), "negative"},
		{"traversal", mutate(func(m *ocispec.Manifest) {
			m.Layers[0].Annotations = map[string]string{AnnotationFilepath: "../../etc/passwd"}
		}), "contains \"..\""},
		{"absolute title", mutate(func(m *ocispec.Manifest) {
			m.Layers[0].Annotations = map[string]string{AnnotationTitle: "/etc/passwd"}
		}), "absolute"},
		{"disagree", mutate(func(m *ocispec.Manifest) {
			m.Layers[0].Annotations = map[string]string{AnnotationTitle: "a", AnnotationFilepath: "b"}
		}), "disagree"},
		{"unnamed", mutate(func(m *ocispec.Manifest) { m.Layers[0].Annotations = nil }), "no name"},
		{"case dup", mutate(func(m *ocispec.Manifest) {
			m.Layers[1].Annotations = map[string]string{AnnotationTitle: "MODEL.onnx"}
		}), "same file"},
		{"huge", append(a.Manifest, make([]byte, MaxManifestSize)...), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseManifest: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigChecksDiffIDs(t *testing.T) {
	a, err := Pack(sampleFiles(), PackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := a.ParsedManifest
	m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
	m.Layers[0], m.Layers[1] = m.Layers[1], m.Layers[0]
	if _, err := ParseConfig(a.Config, &m); err == nil || !strings.Contains(err.Error(), "diffIds[0]") {
		t.Fatalf("swapped layers: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"modelfs":{"type":"tar"}}`), &a.ParsedManifest); err == nil {
		t.Fatal("modelfs.type tar accepted")
	}
}

func TestBenchAnnotations(t *testing.T) {
	report := []byte(`{"model":"m.onnx","latency_ms":{"p50":12.5,"p95":20},"peak_rss_bytes":123456789012,
		"quality":{"cosine":0.9997,"mse":1e-06},"provider":"cpu","shapes":[1,16,128],"ok":true,"missing":null,"files":{"my model.onnx":5}}`)
	got, err := DecodeBenchReport(report)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dev.modelctl.bench.model":               "m.onnx",
		"dev.modelctl.bench.latency_ms.p50":      "12.5",
		"dev.modelctl.bench.latency_ms.p95":      "20",
		"dev.modelctl.bench.peak_rss_bytes":      "123456789012",
		"dev.modelctl.bench.quality.cosine":      "0.9997",
		"dev.modelctl.bench.quality.mse":         "1e-06",
		"dev.modelctl.bench.provider":            "cpu",
		"dev.modelctl.bench.shapes":              "1,16,128",
		"dev.modelctl.bench.ok":                  "true",
		"dev.modelctl.bench.files.my_model.onnx": "5",
	}
	if len(got) != len(want) {
		t.Errorf("got %d annotations, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if b := Benchmark(got); b["latency_ms.p50"] != "12.5" {
		t.Errorf("Benchmark() = %v", b)
	}
	for _, bad := range []string{`[1]`, `{"a":[{"x":1}]}`, `{"":1}`, `{"a":"` + strings.Repeat("x", MaxAnnotationValue+1) + `"}`} {
		if _, err := DecodeBenchReport([]byte(bad)); err == nil {
			t.Errorf("DecodeBenchReport(%.40s) accepted", bad)
		}
	}
}

// A report written by `modelctl bench --json` (quantize/bench.Report,
// schema 1) flattens into annotations within the limits.
func TestBenchAnnotationsRealReport(t *testing.T) {
	b, err := os.ReadFile("testdata/bench-report.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeBenchReport(b)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"dev.modelctl.bench.schema":                   "1",
		"dev.modelctl.bench.model.latency_ms.p50":     "0.18249",
		"dev.modelctl.bench.model.peak_rss_bytes.run": "56045568",
		"dev.modelctl.bench.quality_worst.cosine":     "1",
		"dev.modelctl.bench.gates.passed":             "true",
		"dev.modelctl.bench.inputs.input.shape":       "1,4,256",
	} {
		if a[k] != want {
			t.Errorf("%s = %q, want %q", k, a[k], want)
		}
	}
	if len(a) < 50 || len(a) > maxBenchAnnotations {
		t.Errorf("%d annotations", len(a))
	}
}
