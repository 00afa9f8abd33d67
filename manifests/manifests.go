// Package manifests is the artifact format of modelctl: an OCI image manifest
// v1.1 compatible with the CNCF ModelPack spec (so that KitOps, modctl and
// Harbor can read it), holding one raw, uncompressed layer per file, a
// ModelPack config, and modelctl's own annotations (benchmark, provenance,
// creation time) under the single prefix AnnotationPrefix.
//
// Everything read back from a registry goes through ParseManifest and
// ParseConfig, which refuse anything a client must not act on: unknown media
// types, sizes or digests that do not add up, and file paths that could
// escape the directory a model is installed into.
//
// This package imports only image-spec, go-digest and the standard library,
// so that the client, the registry and the quantizer can all depend on it.
package manifests

import (
	"encoding/json"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Media types of the ModelPack spec (github.com/modelpack/model-spec).
const (
	ArtifactTypeModel = "application/vnd.cncf.model.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.cncf.model.config.v1+json"

	MediaTypeWeightRaw       = "application/vnd.cncf.model.weight.v1.raw"
	MediaTypeWeightConfigRaw = "application/vnd.cncf.model.weight.config.v1.raw"
	MediaTypeDocRaw          = "application/vnd.cncf.model.doc.v1.raw"
	MediaTypeCodeRaw         = "application/vnd.cncf.model.code.v1.raw"
	MediaTypeDatasetRaw      = "application/vnd.cncf.model.dataset.v1.raw"

	// MediaTypeImageManifest is the manifest media type we write and accept.
	MediaTypeImageManifest = "application/vnd.oci.image.manifest.v1+json"
)

// rawLayerTypes are the layer media types a pull can install: each is the
// file itself, so the layer digest is the file's sha256. Archive layers
// (.tar, +gzip) are refused rather than unpacked: unpacking is where path
// traversal and link tricks live, and we never produce them.
var rawLayerTypes = map[string]bool{
	MediaTypeWeightRaw:       true,
	MediaTypeWeightConfigRaw: true,
	MediaTypeDocRaw:          true,
	MediaTypeCodeRaw:         true,
	MediaTypeDatasetRaw:      true,
}

// IsRawLayerType reports whether a layer of this media type is a plain file.
func IsRawLayerType(mediaType string) bool { return rawLayerTypes[mediaType] }

// Layer annotations: the file's path relative to the model directory.
const (
	AnnotationFilepath = "org.cncf.model.filepath"
	AnnotationTitle    = "org.opencontainers.image.title"
	AnnotationCreated  = "org.opencontainers.image.created"
)

// Limits on what a client reads before it knows it can trust it. They bound
// memory; nothing is ever sized by an untrusted field.
const (
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 4 << 20
	MaxLayers       = 10000
	MaxPathLen      = 1024
	// MaxAnnotationValue bounds one annotation value we write, so that a
	// large bench report cannot make the manifest unreadable.
	MaxAnnotationValue = 4096
)

// Model is the ModelPack config blob (application/vnd.cncf.model.config.v1+json).
// Field names and types follow model-spec specs-go/v1 exactly, so a strict
// ModelPack reader decodes it; our additions are extra fields a ModelPack
// reader ignores.
type Model struct {
	Descriptor ModelDescriptor `json:"descriptor"`
	ModelFS    ModelFS         `json:"modelfs"`
	Config     ModelConfig     `json:"config"`
}

// ModelDescriptor is the general information about a model.
type ModelDescriptor struct {
	CreatedAt   *time.Time `json:"createdAt,omitempty"`
	Authors     []string   `json:"authors,omitempty"`
	Family      string     `json:"family,omitempty"`
	Name        string     `json:"name,omitempty"`
	DocURL      string     `json:"docURL,omitempty"`
	SourceURL   string     `json:"sourceURL,omitempty"`
	Version     string     `json:"version,omitempty"`
	Revision    string     `json:"revision,omitempty"`
	Vendor      string     `json:"vendor,omitempty"`
	Licenses    []string   `json:"licenses,omitempty"`
	Title       string     `json:"title,omitempty"`
	Description string     `json:"description,omitempty"`
}

// ModelConfig holds the execution parameters of a model.
//
// ModelPack defines quantization as a string (the method, e.g. "dynamic"),
// so Quantization stays a string here for compatibility; the method's
// parameters (per-channel, reduce-range, weight type, block size, ...) go in
// QuantizationParameters, a field ModelPack readers ignore, and are mirrored
// in the manifest annotations under AnnotationPrefix+"quantization.".
type ModelConfig struct {
	Architecture           string            `json:"architecture,omitempty"`
	Format                 string            `json:"format,omitempty"`
	ParamSize              string            `json:"paramSize,omitempty"`
	Precision              string            `json:"precision,omitempty"`
	Quantization           string            `json:"quantization,omitempty"`
	QuantizationParameters map[string]string `json:"quantizationParameters,omitempty"`
}

// ModelFS lists the layer digests; for raw layers they equal the layer digests.
type ModelFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diffIds"`
}

// FormatONNX is the config format of every model modelctl packs.
const FormatONNX = "onnx"

// Quantization is how a model was quantized, as the quantizer reports it.
type Quantization struct {
	Method     string            `json:"method"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// MarshalConfig encodes a config deterministically (sorted map keys, no
// indentation), so that the same model yields the same config digest.
func MarshalConfig(m *Model) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode model config: %w", err)
	}
	return b, nil
}
