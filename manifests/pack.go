package manifests

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one file of a model as it goes into a layer.
type File struct {
	// Path is the file's path relative to the model directory (slash-separated).
	Path      string
	MediaType string
	Digest    digest.Digest
	Size      int64
}

// LayerMediaType chooses the layer media type of a file by its name:
// documentation is a doc layer, everything else (graph, external data) a
// weight layer.
func LayerMediaType(path string) string {
	base := strings.ToLower(path[strings.LastIndex(path, "/")+1:])
	switch {
	case strings.HasSuffix(base, ".md"), strings.HasSuffix(base, ".txt"),
		strings.HasPrefix(base, "license"), strings.HasPrefix(base, "readme"):
		return MediaTypeDocRaw
	}
	return MediaTypeWeightRaw
}

// Layer returns the layer descriptor of a file.
func (f File) Layer() ocispec.Descriptor {
	mt := f.MediaType
	if mt == "" {
		mt = LayerMediaType(f.Path)
	}
	return ocispec.Descriptor{
		MediaType: mt,
		Digest:    f.Digest,
		Size:      f.Size,
		Annotations: map[string]string{
			AnnotationFilepath: f.Path,
			AnnotationTitle:    f.Path,
		},
	}
}

// PackOptions describes the artifact to build.
type PackOptions struct {
	Name         string
	Version      string
	Precision    string
	Quantization *Quantization
	// Format is the config's model format (default onnx); Architecture and
	// ParamSize describe the model when its format tells them (GGUF,
	// safetensors configs).
	Format       string
	Architecture string
	ParamSize    string
	CreatedAt    time.Time
	// Annotations are added to the manifest (bench, provenance); every key
	// must be under AnnotationPrefix or a standard org.opencontainers key.
	Annotations map[string]string
}

// Artifact is a packed artifact: its config and manifest as the bytes that
// are pushed, with their descriptors.
type Artifact struct {
	Config         []byte
	ConfigDesc     ocispec.Descriptor
	Manifest       []byte
	ManifestDesc   ocispec.Descriptor
	ParsedManifest ocispec.Manifest
}

// Pack builds the ModelPack config and manifest for files. The result passes
// ParseManifest and ParseConfig: what we push is what we would accept.
func Pack(files []File, opts PackOptions) (*Artifact, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("pack: no files")
	}

	layers := make([]ocispec.Descriptor, 0, len(files))
	diffIDs := make([]digest.Digest, 0, len(files))
	for _, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return nil, fmt.Errorf("pack %s: %w", f.Path, err)
		}
		if err := f.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("pack %s: digest %q: %w", f.Path, f.Digest, err)
		}
		l := f.Layer()
		layers = append(layers, l)
		diffIDs = append(diffIDs, f.Digest)
	}

	a, err := packLayers(layers, diffIDs, opts)
	if err != nil {
		return nil, err
	}
	// What we push must be what we would accept on pull.
	if _, err := ParseManifest(a.Manifest); err != nil {
		return nil, fmt.Errorf("pack: built an invalid manifest: %w", err)
	}
	if _, err := ParseConfig(a.Config, &a.ParsedManifest); err != nil {
		return nil, fmt.Errorf("pack: built an invalid config: %w", err)
	}
	return a, nil
}

// packLayers builds the ModelPack config (diffIDs, format, precision,
// quantization) and the manifest of layers with opts' annotations, checked
// to be under AnnotationPrefix or org.opencontainers and bounded: what Pack
// and PackArchives share.
func packLayers(layers []ocispec.Descriptor, diffIDs []digest.Digest, opts PackOptions) (*Artifact, error) {
	created := opts.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	cfg := ModelConfig{Format: FormatONNX, Precision: opts.Precision, Architecture: opts.Architecture, ParamSize: opts.ParamSize}
	if opts.Format != "" {
		cfg.Format = opts.Format
	}
	if q := opts.Quantization; q != nil && q.Method != "" {
		cfg.Quantization = q.Method
		if len(q.Parameters) > 0 {
			cfg.QuantizationParameters = q.Parameters
		}
	}
	model := &Model{
		Descriptor: ModelDescriptor{CreatedAt: &created, Name: opts.Name, Version: opts.Version},
		ModelFS:    ModelFS{Type: "layers", DiffIDs: diffIDs},
		Config:     cfg,
	}
	configBytes, err := MarshalConfig(model)
	if err != nil {
		return nil, err
	}
	configDesc := ocispec.Descriptor{
		MediaType: MediaTypeConfig,
		Digest:    digest.FromBytes(configBytes),
		Size:      int64(len(configBytes)),
	}

	annotations := CreatedAnnotations(created)
	keys := make([]string, 0, len(opts.Annotations))
	for k := range opts.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, AnnotationPrefix) && !strings.HasPrefix(k, "org.opencontainers.") {
			return nil, fmt.Errorf("pack: annotation %q is outside %q", k, AnnotationPrefix)
		}
		if len(opts.Annotations[k]) > MaxAnnotationValue {
			return nil, fmt.Errorf("pack: annotation %q is over %d bytes", k, MaxAnnotationValue)
		}
		annotations[k] = opts.Annotations[k]
	}

	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    MediaTypeImageManifest,
		ArtifactType: ArtifactTypeModel,
		Config:       configDesc,
		Layers:       layers,
		Annotations:  annotations,
	}
	manifestBytes, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	a := &Artifact{
		Config:     configBytes,
		ConfigDesc: configDesc,
		Manifest:   manifestBytes,
		ManifestDesc: ocispec.Descriptor{
			MediaType:    MediaTypeImageManifest,
			ArtifactType: ArtifactTypeModel,
			Digest:       digest.FromBytes(manifestBytes),
			Size:         int64(len(manifestBytes)),
		},
		ParsedManifest: m,
	}
	return a, nil
}
