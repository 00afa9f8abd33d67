package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReservedDir is the directory inside an install target that belongs to
// modelctl (the install receipt); no layer may write there.
const ReservedDir = ".modelctl"

// ErrInvalid is wrapped by every validation error, so callers can tell a bad
// artifact from a transport failure with errors.Is.
var ErrInvalid = errors.New("invalid artifact")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Manifest is a validated model manifest and the files its layers install.
type Manifest struct {
	ocispec.Manifest
	// Files are the layers in manifest order, each with its validated path.
	Files []File
}

// ParseManifest decodes and validates a model manifest. It accepts exactly
// what a pull can install safely: an OCI image manifest whose config is a
// ModelPack config and whose layers are raw files with distinct, relative,
// clean paths.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, invalidf("manifest is %d bytes, over the %d-byte limit", len(data), MaxManifestSize)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalidf("manifest is not valid JSON: %v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, invalidf("manifest schemaVersion is %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != MediaTypeImageManifest {
		return nil, invalidf("manifest mediaType is %q, want %q", m.MediaType, MediaTypeImageManifest)
	}
	if m.ArtifactType != "" && m.ArtifactType != ArtifactTypeModel {
		return nil, invalidf("artifactType is %q, want %q: not a model artifact", m.ArtifactType, ArtifactTypeModel)
	}
	if m.Config.MediaType != MediaTypeConfig {
		return nil, invalidf("config mediaType is %q, want %q: not a model artifact", m.Config.MediaType, MediaTypeConfig)
	}
	if err := checkDescriptor(m.Config, MaxConfigSize); err != nil {
		return nil, invalidf("config: %v", err)
	}
	if len(m.Layers) == 0 {
		return nil, invalidf("manifest has no layers")
	}
	if len(m.Layers) > MaxLayers {
		return nil, invalidf("manifest has %d layers, over the limit of %d", len(m.Layers), MaxLayers)
	}
	files := make([]File, 0, len(m.Layers))
	for i, l := range m.Layers {
		f, err := layerFile(l)
		if err != nil {
			return nil, invalidf("layer %d: %v", i, err)
		}
		files = append(files, f)
	}
	if err := CheckPathSet(files); err != nil {
		return nil, err
	}
	return &Manifest{Manifest: m, Files: files}, nil
}

func layerFile(l ocispec.Descriptor) (File, error) {
	if !IsRawLayerType(l.MediaType) {
		return File{}, fmt.Errorf("mediaType %q is not a raw model file layer", l.MediaType)
	}
	if err := checkDescriptor(l, -1); err != nil {
		return File{}, err
	}
	p, ok := l.Annotations[AnnotationFilepath]
	title, hasTitle := l.Annotations[AnnotationTitle]
	switch {
	case !ok && !hasTitle:
		return File{}, fmt.Errorf("no %s or %s annotation: the file has no name", AnnotationFilepath, AnnotationTitle)
	case !ok:
		p = title
	case hasTitle && title != p:
		return File{}, fmt.Errorf("%s %q and %s %q disagree", AnnotationFilepath, p, AnnotationTitle, title)
	}
	if err := ValidatePath(p); err != nil {
		return File{}, err
	}
	return File{Path: p, MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}, nil
}

// checkDescriptor checks the digest and size of a descriptor; maxSize < 0
// means no limit beyond being non-negative.
func checkDescriptor(d ocispec.Descriptor, maxSize int64) error {
	// Algorithm() panics on a digest without a colon: test the prefix.
	if !strings.HasPrefix(string(d.Digest), string(digest.SHA256)+":") {
		return fmt.Errorf("digest %q: only sha256 digests are supported", d.Digest)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %v", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	if maxSize >= 0 && d.Size > maxSize {
		return fmt.Errorf("size %d is over the %d-byte limit", d.Size, maxSize)
	}
	return nil
}

// windowsReserved are device names Windows opens instead of a file, with or
// without an extension.
var windowsReserved = map[string]bool{
	"con": true, "prn": true, "aux": true, "nul": true,
	"com1": true, "com2": true, "com3": true, "com4": true, "com5": true, "com6": true, "com7": true, "com8": true, "com9": true,
	"lpt1": true, "lpt2": true, "lpt3": true, "lpt4": true, "lpt5": true, "lpt6": true, "lpt7": true, "lpt8": true, "lpt9": true,
}

// ValidatePath checks that p names a file strictly inside an install
// directory on every platform we run on: relative, slash-separated, clean,
// no "." or ".." elements, no backslashes (a separator on Windows), no
// colons (drive letters, NTFS streams), no control characters, no elements
// Windows would silently rename (trailing dot or space, device names), and
// nothing under ReservedDir.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return invalidf("empty file path")
	case len(p) > MaxPathLen:
		return invalidf("file path is %d bytes, over the %d-byte limit", len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return invalidf("file path %q is not valid UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return invalidf("file path %q is absolute", p)
	case strings.ContainsRune(p, '\\'):
		return invalidf("file path %q contains a backslash", p)
	case strings.ContainsRune(p, ':'):
		return invalidf("file path %q contains a colon (drive letter or stream)", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return invalidf("file path %q contains a control character", p)
		}
	}
	if path.Clean(p) != p {
		return invalidf("file path %q is not clean (want %q)", p, path.Clean(p))
	}
	for i, elem := range strings.Split(p, "/") {
		switch {
		case elem == "." || elem == "..":
			return invalidf("file path %q contains %q", p, elem)
		case strings.HasSuffix(elem, ".") || strings.HasSuffix(elem, " "):
			return invalidf("file path %q has an element ending in a dot or space", p)
		case i == 0 && strings.EqualFold(elem, ReservedDir):
			return invalidf("file path %q is inside %s, which modelctl reserves", p, ReservedDir)
		}
		stem := strings.ToLower(elem)
		if j := strings.IndexByte(stem, '.'); j >= 0 {
			stem = stem[:j]
		}
		if windowsReserved[strings.TrimRight(stem, " ")] {
			return invalidf("file path %q uses the reserved device name %q", p, elem)
		}
	}
	return nil
}

// fold maps a path to the key under which case-insensitive filesystems
// (Windows, macOS) see it.
func fold(p string) string { return strings.ToLower(strings.ToUpper(p)) }

// CheckPathSet refuses two files that would land on the same file, also on
// a case-insensitive filesystem, and a file that is another file's directory.
func CheckPathSet(files []File) error {
	seen := make(map[string]string, len(files))
	dirs := map[string]string{}
	for _, f := range files {
		k := fold(f.Path)
		if prev, ok := seen[k]; ok {
			return invalidf("file paths %q and %q are the same file", prev, f.Path)
		}
		if prev, ok := dirs[k]; ok {
			return invalidf("file path %q is also the directory of %q", f.Path, prev)
		}
		seen[k] = f.Path
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dk := fold(d)
			if prev, ok := seen[dk]; ok {
				return invalidf("file path %q is also the directory of %q", prev, f.Path)
			}
			dirs[dk] = f.Path
		}
	}
	return nil
}

// ParseConfig decodes and validates a model config against its manifest:
// the ModelFS must list exactly the manifest's layer digests, in order.
func ParseConfig(data []byte, m *ocispec.Manifest) (*Model, error) {
	if len(data) > MaxConfigSize {
		return nil, invalidf("config is %d bytes, over the %d-byte limit", len(data), MaxConfigSize)
	}
	var model Model
	if err := json.Unmarshal(data, &model); err != nil {
		return nil, invalidf("config is not a ModelPack config: %v", err)
	}
	if model.ModelFS.Type != "layers" {
		return nil, invalidf("config modelfs.type is %q, want \"layers\"", model.ModelFS.Type)
	}
	if len(model.ModelFS.DiffIDs) != len(m.Layers) {
		return nil, invalidf("config lists %d diffIds for %d layers", len(model.ModelFS.DiffIDs), len(m.Layers))
	}
	for i, d := range model.ModelFS.DiffIDs {
		if d != m.Layers[i].Digest {
			return nil, invalidf("config diffIds[%d] is %s, layer %d is %s", i, d, i, m.Layers[i].Digest)
		}
	}
	return &model, nil
}
