package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file reads what the rest of the ecosystem pushes: ModelPack
// artifacts with archive layers, KitOps ModelKits, and plain ORAS artifacts
// whose layers are named files. ParseManifest stays the strict path for
// modelctl's own artifacts; Classify is the wider one, and every artifact
// ParseManifest accepts classifies as ModelPack with the same files.

// Archive layer media types of the ModelPack spec, from
// github.com/modelpack/model-spec specs-go/v1/mediatype.go (the raw ones are
// in manifests.go). A tar layer holds files at their paths relative to the
// model directory; +gzip and +zstd compress that tar.
const (
	MediaTypeWeightTar     = "application/vnd.cncf.model.weight.v1.tar"
	MediaTypeWeightTarGzip = "application/vnd.cncf.model.weight.v1.tar+gzip"
	MediaTypeWeightTarZstd = "application/vnd.cncf.model.weight.v1.tar+zstd"

	MediaTypeWeightConfigTar     = "application/vnd.cncf.model.weight.config.v1.tar"
	MediaTypeWeightConfigTarGzip = "application/vnd.cncf.model.weight.config.v1.tar+gzip"
	MediaTypeWeightConfigTarZstd = "application/vnd.cncf.model.weight.config.v1.tar+zstd"

	MediaTypeDocTar     = "application/vnd.cncf.model.doc.v1.tar"
	MediaTypeDocTarGzip = "application/vnd.cncf.model.doc.v1.tar+gzip"
	MediaTypeDocTarZstd = "application/vnd.cncf.model.doc.v1.tar+zstd"

	MediaTypeCodeTar     = "application/vnd.cncf.model.code.v1.tar"
	MediaTypeCodeTarGzip = "application/vnd.cncf.model.code.v1.tar+gzip"
	MediaTypeCodeTarZstd = "application/vnd.cncf.model.code.v1.tar+zstd"

	MediaTypeDatasetTar     = "application/vnd.cncf.model.dataset.v1.tar"
	MediaTypeDatasetTarGzip = "application/vnd.cncf.model.dataset.v1.tar+gzip"
	MediaTypeDatasetTarZstd = "application/vnd.cncf.model.dataset.v1.tar+zstd"
)

// ModelPack layer annotations beyond the file path, from model-spec
// specs-go/v1/annotations.go.
const (
	// AnnotationFileMetadata holds a JSON FileMetadata of the file a layer
	// packs; for a tar layer of one regular file its size bounds what the
	// archive may unpack to.
	AnnotationFileMetadata = "org.cncf.model.file.metadata+json"
)

// KitOps ModelKit media types and annotations, from github.com/kitops-ml/kitops
// pkg/lib/constants/mediatype/{kitops,mediatype,artifacttype}.go and
// pkg/lib/constants/consts.go, and the ModelKit spec
// (https://kitops.org/docs/modelkit/spec/): the config is the Kitfile as
// JSON; layers are application/vnd.kitops.modelkit.<kind>.v1.<tar|raw>
// with an optional +gzip or +zstd, kind one of model, modelpart, code,
// dataset, docs. Prompts travel as code layers marked with
// AnnotationKitLayerSubtype.
const (
	ArtifactTypeKitManifest = "application/vnd.kitops.modelkit.manifest.v1+json"
	MediaTypeKitConfig      = "application/vnd.kitops.modelkit.config.v1+json"
	// AnnotationKitfile is the manifest annotation in which KitOps keeps the
	// Kitfile (JSON) of a ModelKit it packed in the ModelPack format.
	AnnotationKitfile = "ml.kitops.modelkit.kitfile"
	// AnnotationKitLayerSubtype refines a layer kind ("prompt" on a code layer).
	AnnotationKitLayerSubtype = "ml.kitops.modelkit.layer-subtype"

	kitMediaTypePrefix = "application/vnd.kitops.modelkit."
)

// ORAS: the artifactType `oras push` writes when none is given, and the
// layer annotation that marks a directory it packed as a tar+gzip
// (oras-go v2 content/file: AnnotationUnpack).
const (
	ArtifactTypeORASUnknown = "application/vnd.unknown.artifact.v1"
	AnnotationORASUnpack    = "io.deis.oras.content.unpack"
)

// Media types of what is not a file artifact, recognised to say what it is.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayerPrefix  = "application/vnd.docker.image.rootfs."
	mediaTypeOCILayerPrefix     = "application/vnd.oci.image.layer."
)

// ArtifactKind is which ecosystem an artifact comes from.
type ArtifactKind string

const (
	// KindModelPack is a CNCF ModelPack artifact (modelctl's own included).
	KindModelPack ArtifactKind = "modelpack"
	// KindModelKit is a KitOps ModelKit.
	KindModelKit ArtifactKind = "modelkit"
	// KindFiles is any other artifact whose layers are named files, such as
	// what `oras push` writes.
	KindFiles ArtifactKind = "files"
)

// LayerFormat says whether a layer is one file or an archive of files.
type LayerFormat string

const (
	LayerRaw LayerFormat = "raw"
	LayerTar LayerFormat = "tar"
)

// Compression is how an archive layer is compressed.
type Compression string

const (
	CompressionNone Compression = ""
	CompressionGzip Compression = "gzip"
	CompressionZstd Compression = "zstd"
)

// LayerPlan is what a pull does with one layer.
type LayerPlan struct {
	// Index is the layer's position in the manifest.
	Index      int                `json:"index"`
	Descriptor ocispec.Descriptor `json:"descriptor"`
	// Role is the layer's kind in its ecosystem: weight, weight.config,
	// doc, code, dataset (ModelPack); model, modelpart, code, dataset, docs,
	// prompt (KitOps); file (anything else).
	Role        string      `json:"role"`
	Format      LayerFormat `json:"format"`
	Compression Compression `json:"compression,omitempty"`
	// Path is where a raw layer's file goes. For an archive it is the path
	// the producer packed (informational; entries carry their own paths),
	// or "".
	Path string `json:"path,omitempty"`
	// DiffID is the digest of the uncompressed tar when the config declares
	// it (ModelPack diffIds, Kitfile diffId); "" when unknown. For raw and
	// uncompressed tar layers it equals the layer digest.
	DiffID digest.Digest `json:"diff_id,omitempty"`
	// UnpackedSize bounds the bytes an archive's files may hold when the
	// producer declared it (ModelPack file metadata); -1 when unknown.
	UnpackedSize int64 `json:"unpacked_size"`
}

// IsArchive reports whether the layer is unpacked rather than installed as is.
func (l LayerPlan) IsArchive() bool { return l.Format == LayerTar }

// File is the file a raw layer installs; only meaningful for raw layers.
func (l LayerPlan) File() File {
	return File{Path: l.Path, MediaType: l.Descriptor.MediaType, Digest: l.Descriptor.Digest, Size: l.Descriptor.Size}
}

// Classification is a validated manifest of any file artifact and what a
// pull does with each layer.
type Classification struct {
	Kind      ArtifactKind
	MediaType string
	Manifest  ocispec.Manifest
	Layers    []LayerPlan
	// Kitfile is a ModelKit's Kitfile as JSON: the manifest annotation when
	// there is one, else the config once ApplyConfig has read it.
	Kitfile []byte
	// Native is true when ParseManifest accepts the manifest too: modelctl's
	// own install path (config checks, receipt) applies unchanged.
	Native bool
}

// Files are the raw layers' files in manifest order.
func (c *Classification) Files() []File {
	var fs []File
	for _, l := range c.Layers {
		if !l.IsArchive() {
			fs = append(fs, l.File())
		}
	}
	return fs
}

// HasArchives reports whether any layer must be unpacked.
func (c *Classification) HasArchives() bool {
	for _, l := range c.Layers {
		if l.IsArchive() {
			return true
		}
	}
	return false
}

// ClassifyOptions are choices the user makes on the command line.
type ClassifyOptions struct {
	// Name names the file of an artifact's only layer when the layer has
	// none (pull --name).
	Name string
}

// ErrUnnamedLayer is wrapped by the error for a layer that names no file
// and is not an archive: the user can name it (--name) when it is the only one.
var ErrUnnamedLayer = errors.New("layer has no file name")

// NotFileArtifactError says what a manifest is when it is not a file
// artifact (a container image, an index), so the refusal names it.
type NotFileArtifactError struct {
	// What is the kind of thing found: "container image", "image index", ...
	What   string
	Detail string
}

func (e *NotFileArtifactError) Error() string {
	return fmt.Sprintf("%v: this is %s (%s), not an artifact of files: modelctl pulls models whose layers are files", ErrInvalid, e.What, e.Detail)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *NotFileArtifactError) Unwrap() error { return ErrInvalid }

// manifestProbe has the fields of every manifest and index shape we tell apart.
type manifestProbe struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []json.RawMessage    `json:"manifests"`
	FSLayers      []json.RawMessage    `json:"fsLayers"`
}

// Classify validates any OCI image manifest whose layers are files and
// says what a pull does with each layer. mediaType is the media type the
// registry served the manifest with ("" when unknown); the manifest's own
// mediaType field counts too. It refuses, naming what it found, container
// images, indexes, and layers that are neither a named file nor an archive
// of a type it knows; an artifact's only layer without a name is refused
// with ErrUnnamedLayer unless opts.Name names it.
func Classify(data []byte, mediaType string, opts ClassifyOptions) (*Classification, error) {
	if len(data) > MaxManifestSize {
		return nil, invalidf("manifest is %d bytes, over the %d-byte limit", len(data), MaxManifestSize)
	}
	var p manifestProbe
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, invalidf("manifest is not valid JSON: %v", err)
	}
	// A Content-Type may carry parameters ("; charset=utf-8").
	if i := strings.IndexByte(mediaType, ';'); i >= 0 {
		mediaType = mediaType[:i]
	}
	mediaType = strings.TrimSpace(mediaType)
	if mediaType != "" && p.MediaType != "" && mediaType != p.MediaType {
		return nil, invalidf("manifest served as %q says it is %q", mediaType, p.MediaType)
	}
	mt := p.MediaType
	if mt == "" {
		mt = mediaType
	}
	switch {
	case mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList || (p.Manifests != nil && p.Config == nil):
		return nil, &NotFileArtifactError{What: "an image index", Detail: fmt.Sprintf("%s listing %d manifests; pull one of them by digest", orUnknown(mt), len(p.Manifests))}
	case p.SchemaVersion == 1 || p.FSLayers != nil:
		return nil, &NotFileArtifactError{What: "a Docker schema 1 image", Detail: "a deprecated container image format"}
	case mt == mediaTypeDockerManifest:
		return nil, &NotFileArtifactError{What: "a container image", Detail: describeImage(p)}
	case mt != "" && mt != ocispec.MediaTypeImageManifest:
		return nil, invalidf("manifest mediaType is %q, want %q", mt, ocispec.MediaTypeImageManifest)
	}
	if p.SchemaVersion != 2 {
		return nil, invalidf("manifest schemaVersion is %d, want 2", p.SchemaVersion)
	}
	if p.Config == nil {
		return nil, invalidf("manifest has no config")
	}
	if p.Config.MediaType == ocispec.MediaTypeImageConfig || p.Config.MediaType == mediaTypeDockerConfig {
		return nil, &NotFileArtifactError{What: "a container image", Detail: describeImage(p)}
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalidf("manifest is not valid JSON: %v", err)
	}
	if err := checkDescriptor(m.Config, MaxConfigSize); err != nil {
		return nil, invalidf("config: %v", err)
	}
	if len(m.Layers) == 0 {
		return nil, invalidf("manifest has no layers: there are no files to pull")
	}
	if len(m.Layers) > MaxLayers {
		return nil, invalidf("manifest has %d layers, over the limit of %d", len(m.Layers), MaxLayers)
	}

	c := &Classification{Kind: kindOf(&m), MediaType: ocispec.MediaTypeImageManifest, Manifest: m}
	if k, ok := m.Annotations[AnnotationKitfile]; ok {
		if !json.Valid([]byte(k)) {
			return nil, invalidf("annotation %s is not JSON", AnnotationKitfile)
		}
		c.Kitfile = []byte(k)
	}
	var unnamed []int
	for i, l := range m.Layers {
		if err := checkDescriptor(l, -1); err != nil {
			return nil, invalidf("layer %d: %v", i, err)
		}
		lp, err := planLayer(i, l)
		if errors.Is(err, ErrUnnamedLayer) {
			unnamed = append(unnamed, i)
			c.Layers = append(c.Layers, lp)
			continue
		}
		if err != nil {
			return nil, invalidf("layer %d: %v", i, err)
		}
		c.Layers = append(c.Layers, lp)
	}
	switch {
	case len(unnamed) == 1 && len(m.Layers) == 1 && opts.Name != "":
		if err := ValidatePath(opts.Name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
		c.Layers[0].Path = opts.Name
	case len(unnamed) == 1 && len(m.Layers) == 1:
		l := m.Layers[0]
		return nil, fmt.Errorf("%w: %w: the artifact's only layer (%s, %d bytes) names no file (no %s annotation): pass --name FILE to choose its name",
			ErrInvalid, ErrUnnamedLayer, orUnknown(l.MediaType), l.Size, AnnotationTitle)
	case len(unnamed) > 0:
		if isContainerLayer(m.Layers[unnamed[0]].MediaType) {
			return nil, &NotFileArtifactError{What: "a container image or filesystem bundle", Detail: describeImage(p)}
		}
		return nil, fmt.Errorf("%w: %w: %d of %d layers name no file (first: layer %d, %s): a file artifact names each layer with %s",
			ErrInvalid, ErrUnnamedLayer, len(unnamed), len(m.Layers), unnamed[0], orUnknown(m.Layers[unnamed[0]].MediaType), AnnotationTitle)
	}
	if err := CheckPathSet(c.Files()); err != nil {
		return nil, err
	}
	if err := checkArchiveRoots(c.Layers); err != nil {
		return nil, err
	}
	if nm, err := ParseManifest(data); err == nil && nm != nil {
		c.Native = true
	}
	return c, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "no mediaType"
	}
	return s
}

func kindOf(m *ocispec.Manifest) ArtifactKind {
	switch {
	case m.ArtifactType == ArtifactTypeKitManifest || m.Config.MediaType == MediaTypeKitConfig:
		return KindModelKit
	case m.ArtifactType == ArtifactTypeModel || m.Config.MediaType == MediaTypeConfig:
		return KindModelPack
	}
	return KindFiles
}

// describeImage summarises an image for the refusal message.
func describeImage(p manifestProbe) string {
	cfg := "no config"
	if p.Config != nil {
		cfg = "config " + orUnknown(p.Config.MediaType)
	}
	types := map[string]int{}
	for _, l := range p.Layers {
		types[orUnknown(l.MediaType)]++
	}
	keys := make([]string, 0, len(types))
	for k := range types {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d× %s", types[k], k))
	}
	return fmt.Sprintf("%s, layers %s; use a container tool (docker, skopeo) for images", cfg, strings.Join(parts, ", "))
}

func isContainerLayer(mt string) bool {
	return strings.HasPrefix(mt, mediaTypeOCILayerPrefix) || strings.HasPrefix(mt, mediaTypeDockerLayerPrefix) ||
		strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.")
}

// ParseLayerMediaType splits a ModelPack or KitOps layer media type into
// its role, format and compression; ok is false for any other media type.
// KitOps spells compressions ModelPack does not have ("gzip-fastest" is
// written as +gzip) and allows compression of raw layers, which ModelPack
// forbids; both are refused here as they are by KitOps' own parser.
func ParseLayerMediaType(mt string) (role string, format LayerFormat, comp Compression, ok bool) {
	var rest string
	var roles map[string]bool
	switch {
	case strings.HasPrefix(mt, "application/vnd.cncf.model."):
		rest = strings.TrimPrefix(mt, "application/vnd.cncf.model.")
		roles = modelPackRoles
	case strings.HasPrefix(mt, kitMediaTypePrefix):
		rest = strings.TrimPrefix(mt, kitMediaTypePrefix)
		roles = kitRoles
	default:
		return "", "", "", false
	}
	i := strings.Index(rest, ".v1.")
	if i < 0 || !roles[rest[:i]] {
		return "", "", "", false
	}
	role, rest = rest[:i], rest[i+len(".v1."):]
	if j := strings.IndexByte(rest, '+'); j >= 0 {
		switch rest[j+1:] {
		case "gzip":
			comp = CompressionGzip
		case "zstd":
			comp = CompressionZstd
		default:
			return "", "", "", false
		}
		rest = rest[:j]
	}
	switch {
	case rest == "raw" && comp == CompressionNone:
		format = LayerRaw
	case rest == "tar":
		format = LayerTar
	default:
		return "", "", "", false
	}
	return role, format, comp, true
}

// Layer kinds, from model-spec specs-go/v1/mediatype.go and kitops
// pkg/lib/constants/mediatype/kitops.go (ParseKitBaseType).
var (
	modelPackRoles = map[string]bool{"weight": true, "weight.config": true, "doc": true, "code": true, "dataset": true}
	kitRoles       = map[string]bool{"model": true, "modelpart": true, "code": true, "dataset": true, "docs": true}
)

func planLayer(i int, l ocispec.Descriptor) (LayerPlan, error) {
	lp := LayerPlan{Index: i, Descriptor: l, UnpackedSize: -1}
	role, format, comp, known := ParseLayerMediaType(l.MediaType)
	switch {
	case known:
		lp.Role, lp.Format, lp.Compression = role, format, comp
		if role == "code" && l.Annotations[AnnotationKitLayerSubtype] == "prompt" {
			lp.Role = "prompt"
		}
	case strings.HasPrefix(l.MediaType, "application/vnd.cncf.model.") || strings.HasPrefix(l.MediaType, kitMediaTypePrefix):
		// A type of these specs we do not know (raw+gzip, another kind, a
		// later version) is refused rather than guessed at.
		return lp, fmt.Errorf("mediaType %q is not a layer type of the ModelPack or KitOps spec that modelctl knows", l.MediaType)
	case l.Annotations[AnnotationORASUnpack] == "true":
		// A directory `oras push` packed: a tar(+gzip) whose entries start
		// with the directory's name.
		lp.Role, lp.Format = "directory", LayerTar
		switch {
		case strings.HasSuffix(l.MediaType, "tar+gzip") || strings.HasSuffix(l.MediaType, ".tar.gzip"):
			lp.Compression = CompressionGzip
		case strings.HasSuffix(l.MediaType, "tar+zstd"):
			lp.Compression = CompressionZstd
		case strings.HasSuffix(l.MediaType, ".tar"):
		default:
			return lp, fmt.Errorf("mediaType %q is marked %s but is not a tar archive", l.MediaType, AnnotationORASUnpack)
		}
	default:
		lp.Role, lp.Format = "file", LayerRaw
	}
	name, err := layerName(l)
	if err != nil {
		return lp, err
	}
	if lp.Format == LayerTar {
		// The name of an archive is what was packed; the entries carry the
		// paths. Kept only when it is a valid path, for display.
		if name != "" && ValidatePath(name) == nil {
			lp.Path = name
		}
		if lp.Compression == CompressionNone {
			lp.DiffID = l.Digest
		}
		lp.UnpackedSize = declaredFileSize(l)
		return lp, nil
	}
	lp.DiffID = l.Digest
	if name == "" {
		return lp, ErrUnnamedLayer
	}
	if err := ValidatePath(name); err != nil {
		return lp, err
	}
	lp.Path = name
	return lp, nil
}

// layerName is the file path a layer names, from org.cncf.model.filepath
// or org.opencontainers.image.title; the two must agree when both are set.
func layerName(l ocispec.Descriptor) (string, error) {
	p, ok := l.Annotations[AnnotationFilepath]
	title, hasTitle := l.Annotations[AnnotationTitle]
	switch {
	case !ok && !hasTitle:
		return "", nil
	case !ok:
		return title, nil
	case hasTitle && title != p:
		return "", fmt.Errorf("%s %q and %s %q disagree", AnnotationFilepath, p, AnnotationTitle, title)
	}
	return p, nil
}

// fileMetadata is the part of model-spec's FileMetadata we use.
type fileMetadata struct {
	Size     int64 `json:"size"`
	Typeflag byte  `json:"typeflag"`
}

// declaredFileSize is the size a tar layer's file metadata declares for a
// regular file, or -1. Producers write typeflag 0 (modctl, KitOps) or '0'.
func declaredFileSize(l ocispec.Descriptor) int64 {
	s, ok := l.Annotations[AnnotationFileMetadata]
	if !ok {
		return -1
	}
	var fm fileMetadata
	if err := json.Unmarshal([]byte(s), &fm); err != nil || fm.Size < 0 || (fm.Typeflag != 0 && fm.Typeflag != '0') {
		return -1
	}
	return fm.Size
}

// checkArchiveRoots refuses an archive that says it packs a path that is
// also a raw layer's file: the two would write one file. Entries of
// archives are checked against each other as they are unpacked.
func checkArchiveRoots(layers []LayerPlan) error {
	files := map[string]string{}
	for _, l := range layers {
		if !l.IsArchive() {
			files[fold(l.Path)] = l.Path
		}
	}
	for _, l := range layers {
		if l.IsArchive() && l.Path != "" {
			if prev, ok := files[fold(l.Path)]; ok {
				return invalidf("layer %d (an archive of %q) and the file layer %q are the same path", l.Index, l.Path, prev)
			}
		}
	}
	return nil
}

// Kitfile is the part of a KitOps Kitfile (config
// application/vnd.kitops.modelkit.config.v1+json) that inspect shows and
// pull checks, after kitops pkg/artifact/kitfile.go. Unknown fields are
// kept in the raw JSON, not here.
type Kitfile struct {
	ManifestVersion string     `json:"manifestVersion"`
	Package         KitPackage `json:"package,omitempty"`
	Model           *KitModel  `json:"model,omitempty"`
	Code            []KitEntry `json:"code,omitempty"`
	Datasets        []KitEntry `json:"datasets,omitempty"`
	Docs            []KitEntry `json:"docs,omitempty"`
	Prompts         []KitEntry `json:"prompts,omitempty"`
}

// KitPackage describes a ModelKit as a whole.
type KitPackage struct {
	Name        string   `json:"name,omitempty"`
	Version     string   `json:"version,omitempty"`
	Description string   `json:"description,omitempty"`
	License     string   `json:"license,omitempty"`
	Authors     []string `json:"authors,omitempty"`
}

// KitModel is the model section of a Kitfile.
type KitModel struct {
	KitEntry
	Framework string     `json:"framework,omitempty"`
	Format    string     `json:"format,omitempty"`
	Version   string     `json:"version,omitempty"`
	Parts     []KitEntry `json:"parts,omitempty"`
}

// KitEntry is one path of a Kitfile and the layer that holds it.
type KitEntry struct {
	Name        string `json:"name,omitempty"`
	Path        string `json:"path,omitempty"`
	Description string `json:"description,omitempty"`
	License     string `json:"license,omitempty"`
	Type        string `json:"type,omitempty"`
	// Digest is the layer's digest and DiffID the uncompressed tar's.
	Digest string `json:"digest,omitempty"`
	DiffID string `json:"diffId,omitempty"`
}

// ParseKitfile decodes a Kitfile from its JSON form (a ModelKit config).
func ParseKitfile(data []byte) (*Kitfile, error) {
	if len(data) > MaxConfigSize {
		return nil, invalidf("Kitfile is %d bytes, over the %d-byte limit", len(data), MaxConfigSize)
	}
	var k Kitfile
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, invalidf("config is not a Kitfile: %v", err)
	}
	if k.ManifestVersion == "" {
		return nil, invalidf("Kitfile has no manifestVersion")
	}
	return &k, nil
}

// entries are the Kitfile's paths with their layers, in Kitfile order.
func (k *Kitfile) entries() []KitEntry {
	var es []KitEntry
	if k.Model != nil {
		es = append(es, k.Model.KitEntry)
		es = append(es, k.Model.Parts...)
	}
	es = append(es, k.Code...)
	es = append(es, k.Datasets...)
	es = append(es, k.Docs...)
	es = append(es, k.Prompts...)
	return es
}

// ApplyConfig checks the config blob against the classified manifest and
// takes from it what the manifest does not say: the uncompressed digests
// (DiffIDs) of compressed archives, which the unpacker then verifies, and
// a ModelKit's Kitfile. A ModelPack config must list one diffId per layer,
// equal to the layer digest for raw and plain tar layers; a Kitfile's
// layer digests must name layers of the manifest. The config of other
// artifacts (ORAS writes an empty one) is not interpreted.
func (c *Classification) ApplyConfig(config []byte) error {
	if int64(len(config)) != c.Manifest.Config.Size || digest.FromBytes(config) != c.Manifest.Config.Digest {
		return invalidf("config does not match its descriptor (%s, %d bytes)", c.Manifest.Config.Digest, c.Manifest.Config.Size)
	}
	switch {
	case c.Manifest.Config.MediaType == MediaTypeConfig:
		return c.applyModelPackConfig(config)
	case c.Manifest.Config.MediaType == MediaTypeKitConfig:
		k, err := ParseKitfile(config)
		if err != nil {
			return err
		}
		byDigest := map[digest.Digest]int{}
		for i, l := range c.Layers {
			byDigest[l.Descriptor.Digest] = i
		}
		for _, e := range k.entries() {
			if e.Digest == "" {
				continue
			}
			i, ok := byDigest[digest.Digest(e.Digest)]
			if !ok {
				return invalidf("Kitfile entry %q names layer %s, which is not in the manifest", e.Path, e.Digest)
			}
			if e.DiffID == "" {
				continue
			}
			d := digest.Digest(e.DiffID)
			if err := d.Validate(); err != nil {
				return invalidf("Kitfile entry %q: diffId %q: %v", e.Path, e.DiffID, err)
			}
			if err := c.setDiffID(i, d); err != nil {
				return invalidf("Kitfile entry %q: %v", e.Path, err)
			}
		}
		if c.Kitfile == nil {
			c.Kitfile = config
		}
	}
	return nil
}

func (c *Classification) applyModelPackConfig(config []byte) error {
	if len(config) > MaxConfigSize {
		return invalidf("config is %d bytes, over the %d-byte limit", len(config), MaxConfigSize)
	}
	var model Model
	if err := json.Unmarshal(config, &model); err != nil {
		return invalidf("config is not a ModelPack config: %v", err)
	}
	if model.ModelFS.Type != "layers" {
		return invalidf("config modelfs.type is %q, want \"layers\"", model.ModelFS.Type)
	}
	if len(model.ModelFS.DiffIDs) != len(c.Layers) {
		return invalidf("config lists %d diffIds for %d layers", len(model.ModelFS.DiffIDs), len(c.Layers))
	}
	for i, d := range model.ModelFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return invalidf("config diffIds[%d] %q: %v", i, d, err)
		}
		if err := c.setDiffID(i, d); err != nil {
			return invalidf("config diffIds[%d]: %v", i, err)
		}
	}
	return nil
}

// setDiffID records a declared uncompressed digest for layer i; for a
// layer that is not compressed it must be the layer digest.
func (c *Classification) setDiffID(i int, d digest.Digest) error {
	l := &c.Layers[i]
	if l.Compression == CompressionNone {
		if d != l.Descriptor.Digest {
			return fmt.Errorf("is %s, but layer %d is uncompressed with digest %s", d, i, l.Descriptor.Digest)
		}
		return nil
	}
	if l.DiffID != "" && l.DiffID != d {
		return fmt.Errorf("layer %d is declared with two uncompressed digests, %s and %s", i, l.DiffID, d)
	}
	l.DiffID = d
	return nil
}
