package manifests

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Packing ModelPack tar layers, for teams whose other tools expect archives
// (push --format modelpack-tar). Raw layers stay modelctl's default: a raw
// layer's digest is its file's sha256, which is what makes cache hits,
// resumable pulls and `verify` cheap.

// TarLayer is a packed tar or tar+gzip layer.
type TarLayer struct {
	// Path is what the layer packs (a file or a directory, relative);
	// it becomes the layer's org.cncf.model.filepath.
	Path      string
	MediaType string
	Digest    digest.Digest
	Size      int64
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest
	// Files are the regular files the archive holds, in archive order.
	Files []string
}

// ArchiveMediaType is the ModelPack archive media type for a raw one
// (MediaTypeWeightRaw and so on) and a compression (none or gzip).
func ArchiveMediaType(rawType string, comp Compression) (string, error) {
	base := map[string]string{
		MediaTypeWeightRaw: MediaTypeWeightTar, MediaTypeWeightConfigRaw: MediaTypeWeightConfigTar,
		MediaTypeDocRaw: MediaTypeDocTar, MediaTypeCodeRaw: MediaTypeCodeTar, MediaTypeDatasetRaw: MediaTypeDatasetTar,
	}[rawType]
	switch {
	case base == "":
		return "", fmt.Errorf("%q is not a raw ModelPack layer type", rawType)
	case comp == CompressionNone:
		return base, nil
	case comp == CompressionGzip:
		return base + "+gzip", nil
	}
	// zstd would need a compressor outside the standard library, which this
	// package does not import; unpacking reads tar+zstd all the same.
	return "", fmt.Errorf("packing %s layers is not supported (tar and tar+gzip are)", comp)
}

// WriteTarLayer writes the tar (or tar+gzip) layer of rel, a file or a
// directory under dir, to w: entries in lexical order, named by their
// path relative to dir, with the metadata that varies between machines
// (times, owners, modes beyond the execute bit) left out, so that the same
// files always give the same digest. Only regular files and directories
// are packed; anything else under rel is refused, as unpacking would.
func WriteTarLayer(w io.Writer, dir, rel, rawType string, comp Compression) (*TarLayer, error) {
	if err := ValidatePath(rel); err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	mt, err := ArchiveMediaType(rawType, comp)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	blob := &countingHash{w: w, h: sha256.New()}
	var tarOut io.Writer = blob
	var zw *gzip.Writer
	if comp == CompressionGzip {
		zw = gzip.NewWriter(blob)
		tarOut = zw
	}
	diff := &countingHash{w: tarOut, h: sha256.New()}
	bw := bufio.NewWriterSize(diff, 1<<20)
	tw := tar.NewWriter(bw)
	l := &TarLayer{Path: rel, MediaType: mt}
	if err := writeTree(tw, dir, rel, l); err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("pack %s: %w", rel, err)
		}
	}
	l.Digest = digest.NewDigest(digest.SHA256, blob.h)
	l.Size = blob.n
	l.DiffID = digest.NewDigest(digest.SHA256, diff.h)
	return l, nil
}

func writeTree(tw *tar.Writer, dir, rel string, l *TarLayer) error {
	full := filepath.Join(dir, filepath.FromSlash(rel))
	fi, err := os.Lstat(full)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		if err := tw.WriteHeader(&tar.Header{Name: rel + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return err
		}
		ents, err := os.ReadDir(full)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			child := rel + "/" + n
			if err := ValidatePath(child); err != nil {
				return err
			}
			if err := writeTree(tw, dir, child, l); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		mode := int64(0o644)
		if fi.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		f, err := os.Open(full)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Size: fi.Size(), Mode: mode, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, f)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		if n != fi.Size() {
			return fmt.Errorf("%s changed size while it was packed", rel)
		}
		l.Files = append(l.Files, rel)
		return nil
	}
	return fmt.Errorf("%s is a %v, not a regular file or directory: only those are packed", rel, fi.Mode().Type())
}

// countingHash hashes and counts what is written through it.
type countingHash struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// Descriptor is the layer's descriptor; a layer of one regular file also
// declares that file's size (model-spec's file metadata), which bounds
// what a reader unpacks.
func (l *TarLayer) Descriptor(dir string) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size,
		Annotations: map[string]string{AnnotationFilepath: l.Path}}
	if len(l.Files) == 1 && l.Files[0] == l.Path {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(l.Path)))
		if err != nil {
			return d, err
		}
		b, err := json.Marshal(map[string]any{"name": filepath.Base(l.Path), "mode": uint32(fi.Mode().Perm()), "uid": 0, "gid": 0,
			"size": fi.Size(), "mtime": time.Time{}, "typeflag": 0})
		if err != nil {
			return d, err
		}
		d.Annotations[AnnotationFileMetadata] = string(b)
	}
	return d, nil
}

// PackArchives builds the ModelPack config and manifest for tar layers
// (their descriptors from TarLayer.Descriptor): diffIds are the
// uncompressed tars' digests, as the spec's config schema has them. The
// result classifies as ModelPack and passes ApplyConfig.
func PackArchives(layers []ocispec.Descriptor, diffIDs []digest.Digest, opts PackOptions) (*Artifact, error) {
	if len(layers) == 0 {
		return nil, errors.New("pack: no layers")
	}
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("pack: %d diffIDs for %d layers", len(diffIDs), len(layers))
	}
	a, err := packLayers(layers, diffIDs, opts)
	if err != nil {
		return nil, err
	}
	// What we push must be what we would accept on pull.
	c, err := Classify(a.Manifest, MediaTypeImageManifest, ClassifyOptions{})
	if err != nil {
		return nil, fmt.Errorf("pack: built a manifest pull would refuse: %w", err)
	}
	if err := c.ApplyConfig(a.Config); err != nil {
		return nil, fmt.Errorf("pack: built a config pull would refuse: %w", err)
	}
	return a, nil
}
