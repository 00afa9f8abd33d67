package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/modelctl/modelctl/manifests"
)

// PushFile is a local file to pack as one layer.
type PushFile struct {
	// Path is the file's path in the artifact (relative, slash-separated).
	Path string
	// Source is the local file.
	Source string
	// MinSize is the least size the file must have (external data that the
	// graph's tensors reach into); a shorter file is refused before any byte
	// is sent.
	MinSize   int64
	MediaType string
}

// PushOptions describe what to push.
type PushOptions struct {
	Files []PushFile
	// Tags are extra tags, besides the reference's own.
	Tags []string
	Pack manifests.PackOptions
}

// FileResult is what happened to one file of a push or pull.
type FileResult struct {
	Path        string        `json:"path"`
	Digest      digest.Digest `json:"digest"`
	Size        int64         `json:"size"`
	Status      string        `json:"status"`
	Transferred int64         `json:"transferred"`
	ResumedFrom int64         `json:"resumedFrom,omitempty"`
}

// PushResult is the outcome of a push.
type PushResult struct {
	Reference   string        `json:"reference"`
	Digest      digest.Digest `json:"digest"`
	Tags        []string      `json:"tags"`
	Files       []FileResult  `json:"files"`
	Size        int64         `json:"size"`
	Transferred int64         `json:"transferred"`
}

// Push uploads files as a model artifact and tags it. Every file is checked
// (exists, regular, at least MinSize, a valid path) before any byte is sent.
func (c *Client) Push(ctx context.Context, ref Reference, opts PushOptions) (*PushResult, error) {
	if ref.Digest != "" {
		return nil, fmt.Errorf("push %s: push to a tag, not a digest", ref)
	}
	tags := []string{}
	if ref.Tag != "" {
		tags = append(tags, ref.Tag)
	}
	for _, t := range opts.Tags {
		if _, err := ParseReference(ref.Registry + "/" + ref.Repository + ":" + t); err != nil {
			return nil, fmt.Errorf("push: tag %q: %w", t, err)
		}
		if !contains(tags, t) {
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("push %s: no tag: use REPO:TAG", ref)
	}

	files, err := c.checkFiles(opts.Files)
	if err != nil {
		return nil, err
	}

	r, ctx, err := c.backend(ctx, ref, true)
	if err != nil {
		return nil, err
	}
	prog := newProgress(c.opts.Progress)
	results := make([]blobResult, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallel(ref))
	for i, f := range files {
		fp := prog.file(f.Path, f.Info.Size())
		g.Go(func() error {
			res, err := c.pushBlob(gctx, r, f, fp)
			if err != nil {
				return fmt.Errorf("push %s: %s: %w", ref, f.Path, err)
			}
			results[i] = res
			return nil
		})
	}
	err = g.Wait()
	prog.close()
	if err != nil {
		return nil, err
	}

	out := &PushResult{Reference: ref.String(), Tags: tags}
	packed := make([]manifests.File, len(files))
	for i, f := range files {
		packed[i] = manifests.File{Path: f.Path, MediaType: opts.Files[i].MediaType, Digest: results[i].Digest, Size: f.Info.Size()}
		out.Files = append(out.Files, FileResult{Path: f.Path, Digest: results[i].Digest, Size: f.Info.Size(),
			Status: results[i].Status, Transferred: results[i].Sent, ResumedFrom: results[i].ResumedFrom})
		out.Size += f.Info.Size()
		out.Transferred += results[i].Sent
	}
	art, err := packIdempotent(ctx, r, tags[0], packed, opts.Pack)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	if err := pushSmall(ctx, r, art.ConfigDesc.Digest, art.Config); err != nil {
		return nil, fmt.Errorf("push %s: config: %w", ref, err)
	}
	for _, t := range tags {
		if err := putManifest(ctx, r, t, art.Manifest, manifests.MediaTypeImageManifest, art.ManifestDesc.Digest); err != nil {
			return nil, fmt.Errorf("push %s: manifest: %w", ref, err)
		}
	}
	out.Digest = art.ManifestDesc.Digest
	return out, nil
}

// packIdempotent packs the artifact; when the tag already holds the same
// artifact (same files, config and annotations, only pushed earlier), it
// reuses that creation time so the manifest, and so the digest a config
// pins, does not change on a re-push of an unchanged model.
func packIdempotent(ctx context.Context, r backend, tag string, files []manifests.File, opts manifests.PackOptions) (*manifests.Artifact, error) {
	if opts.CreatedAt.IsZero() {
		if raw, d, _, err := fetchManifest(ctx, r, tag, ""); err == nil {
			if m, err := manifests.ParseManifest(raw); err == nil {
				if t, err := time.Parse(time.RFC3339, m.Annotations[manifests.AnnotationCreatedAt]); err == nil {
					prev := opts
					prev.CreatedAt = t
					if a, err := manifests.Pack(files, prev); err == nil && a.ManifestDesc.Digest == d {
						return a, nil
					}
				}
			}
		}
	}
	return manifests.Pack(files, opts)
}

// checkFiles validates the files to push before anything is sent.
func (c *Client) checkFiles(in []PushFile) ([]*localFile, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("push: no files")
	}
	var set []manifests.File
	out := make([]*localFile, 0, len(in))
	for _, f := range in {
		if err := manifests.ValidatePath(f.Path); err != nil {
			return nil, fmt.Errorf("push %s: %w", f.Source, err)
		}
		abs, err := filepath.Abs(f.Source)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", f.Source, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			if isNotExist(err) {
				return nil, fmt.Errorf("push: %s is missing (the model references it): %w", f.Source, err)
			}
			return nil, fmt.Errorf("push: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("push: %s is not a regular file", f.Source)
		}
		if fi.Size() < f.MinSize {
			return nil, fmt.Errorf("push: %s is %d bytes, but the model's tensors need at least %d: the data file is truncated or belongs to another model", f.Source, fi.Size(), f.MinSize)
		}
		lf := &localFile{Path: f.Path, Source: abs, Info: fi}
		if d, ok := c.cache.LookupDigest(abs, fi); ok {
			lf.Digest = d
		}
		out = append(out, lf)
		set = append(set, manifests.File{Path: f.Path})
	}
	if err := manifests.CheckPathSet(set); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
