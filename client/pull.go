package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/modelctl/modelctl/internal/diskspace"
	"github.com/modelctl/modelctl/internal/unpack"
	"github.com/modelctl/modelctl/manifests"
)

// PullResult is the outcome of a pull.
type PullResult struct {
	Reference   string        `json:"reference"`
	Digest      digest.Digest `json:"digest"`
	Dir         string        `json:"dir"`
	Files       []FileResult  `json:"files"`
	Size        int64         `json:"size"`
	Transferred int64         `json:"transferred"`
	Receipt     string        `json:"receipt"`
	// Warnings are problems of what was installed that do not stop the
	// pull (an ONNX graph whose external data the artifact lacks).
	Warnings []string `json:"warnings,omitempty"`
	// Kept lists files found in the way with bytes the cache does not
	// hold, moved aside (NAME.modelctl-kept-TIME) instead of overwritten.
	Kept []string `json:"kept,omitempty"`
}

// Artifact is a resolved, validated artifact.
type Artifact struct {
	Reference Reference
	Digest    digest.Digest
	Raw       []byte
	// Class says what the manifest is (a ModelPack artifact, modelctl's
	// own included; a KitOps ModelKit; any other artifact whose layers are
	// files, as oras pushes them) and what a pull does with each layer.
	Class *manifests.Classification
	// Manifest lists the files of the raw layers (all of them, for
	// modelctl's own artifacts); an archive layer's files are known once
	// it is unpacked.
	Manifest *manifests.Manifest
	// Config is the ModelPack config, nil for other artifacts.
	Config    *manifests.Model
	RawConfig []byte
}

// PullOptions are the choices of a pull.
type PullOptions struct {
	// Name names the file of an artifact's only layer when the layer has
	// none (pull --name).
	Name string
}

// Resolve fetches and validates the manifest and config of ref.
func (c *Client) Resolve(ctx context.Context, ref Reference) (*Artifact, error) {
	return c.ResolveWith(ctx, ref, PullOptions{})
}

// ResolveWith is Resolve with the choices of a pull (an unnamed layer's name).
func (c *Client) ResolveWith(ctx context.Context, ref Reference, opts PullOptions) (*Artifact, error) {
	r, ctx, err := c.source(ctx, ref)
	if err != nil {
		return nil, err
	}
	return c.resolve(ctx, r, ref, opts)
}

// source opens where ref is read from.
func (c *Client) source(ctx context.Context, ref Reference) (backend, context.Context, error) {
	return c.backend(ctx, ref, false)
}

// backend opens the repository of ref, a registry's or a bucket's; push
// asks a registry's token service for push scope too.
func (c *Client) backend(ctx context.Context, ref Reference, push bool) (backend, context.Context, error) {
	if ref.S3 {
		b, err := c.openBucket(ctx, ref)
		return b, ctx, err
	}
	r, ctx := c.repo(ctx, ref.Registry, ref.Repository, push)
	return r, ctx, nil
}

func (c *Client) resolve(ctx context.Context, r backend, ref Reference, opts PullOptions) (*Artifact, error) {
	if ref.Reference() == "" {
		return nil, fmt.Errorf("%s: no tag or digest", ref)
	}
	raw, d, mediaType, err := fetchManifest(ctx, r, ref.Reference(), ref.Digest)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			if ref.S3 {
				return nil, fmt.Errorf("%s: %w: no such tag or repository in the bucket", ref, err)
			}
			return nil, fmt.Errorf("%s: %w: no such tag or repository (modelctl ls %s/%s lists the tags)", ref, err, ref.Registry, ref.Repository)
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	cls, err := manifests.Classify(raw, mediaType, manifests.ClassifyOptions{Name: opts.Name})
	if err != nil {
		if errors.Is(err, manifests.ErrUnnamedLayer) {
			return nil, fmt.Errorf("%s: %w (name its file with --name FILE)", ref, err)
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	art := &Artifact{Reference: ref, Digest: d, Raw: raw, Class: cls}
	if cls.Native {
		m, err := manifests.ParseManifest(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		cfg, err := fetchSmall(ctx, r, m.Config.Digest, m.Config.Size, manifests.MaxConfigSize)
		if err != nil {
			return nil, fmt.Errorf("%s: config: %w", ref, err)
		}
		model, err := manifests.ParseConfig(cfg, &m.Manifest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		art.Manifest, art.Config, art.RawConfig = m, model, cfg
		return art, nil
	}
	cfg, err := fetchSmall(ctx, r, cls.Manifest.Config.Digest, cls.Manifest.Config.Size, manifests.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	if err := cls.ApplyConfig(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	art.Manifest = &manifests.Manifest{Manifest: cls.Manifest, Files: cls.Files()}
	art.RawConfig = cfg
	if cls.Manifest.Config.MediaType == manifests.MediaTypeConfig {
		if model, err := manifests.ParseConfig(cfg, &cls.Manifest); err == nil {
			art.Config = model
		}
	}
	return art, nil
}

// Pull installs the artifact ref into dir: every layer is fetched into the
// cache and verified first, and only then do files appear in dir, each
// complete (hardlinked from the cache, or copied, fsynced and renamed).
// A failed pull leaves dir as it was (and does not create it).
func (c *Client) Pull(ctx context.Context, ref Reference, dir string) (*PullResult, error) {
	return c.PullWith(ctx, ref, dir, PullOptions{})
}

// PullWith is Pull with the choices of a pull. Archive layers (tar,
// tar+gzip, tar+zstd) are fetched into the cache like any layer, verified,
// then unpacked into a stage beside dir under the path rules of raw
// layers; their files appear in dir together with the raw layers' files,
// and a refused archive leaves dir as it was.
func (c *Client) PullWith(ctx context.Context, ref Reference, dir string, opts PullOptions) (*PullResult, error) {
	r, ctx, err := c.source(ctx, ref)
	if err != nil {
		return nil, err
	}
	art, err := c.resolve(ctx, r, ref, opts)
	if err != nil {
		return nil, err
	}
	// Every layer is a blob to fetch: raw layers under their file's path,
	// archives under a name of their own (for progress and errors).
	var blobs []manifests.File
	var archives []manifests.LayerPlan
	for _, l := range art.Class.Layers {
		if l.IsArchive() {
			archives = append(archives, l)
			blobs = append(blobs, manifests.File{Path: fmt.Sprintf("layer %d (%s)", l.Index, l.Descriptor.MediaType),
				MediaType: l.Descriptor.MediaType, Digest: l.Descriptor.Digest, Size: l.Descriptor.Size})
			continue
		}
		blobs = append(blobs, l.File())
	}
	files := art.Manifest.Files
	prog := newProgress(c.opts.Progress)
	transferred := map[digest.Digest]int64{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	// Large blobs already fetch several ranges each; two files at a time
	// keeps the connection count bounded.
	workers := c.parallel(ref)
	g.SetLimit(max(2, workers/2))
	// Two files with the same content are one blob: fetch it once (two
	// fetches would share one partial file).
	first := map[digest.Digest]bool{}
	for _, f := range blobs {
		if first[f.Digest] {
			continue
		}
		first[f.Digest] = true
		fp := prog.file(f.Path, f.Size)
		g.Go(func() error {
			n, err := c.fetchBlob(gctx, r, f, workers, fp)
			mu.Lock()
			transferred[f.Digest] = n
			mu.Unlock()
			if err != nil {
				return fmt.Errorf("pull %s: %w", ref, err)
			}
			return nil
		})
	}
	err = g.Wait()
	prog.close()
	if err != nil {
		return nil, err
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Each blob's transfer counts once, on its first file.
	perFile := make([]int64, len(files))
	for i, f := range files {
		perFile[i] = transferred[f.Digest]
		transferred[f.Digest] = 0
	}
	var arch *archiveSet
	if len(archives) > 0 {
		stage, unpacked, err := c.unpackArchives(ctx, abs, files, archives)
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		defer stage.Discard()
		arch = &archiveSet{stage: stage, files: unpacked}
		for _, l := range archives {
			arch.transferred += transferred[l.Descriptor.Digest]
			transferred[l.Descriptor.Digest] = 0
		}
	}
	return c.installFiles(ctx, ref, art.Digest, files, abs, perFile, arch)
}

// archiveSet is what the archive layers of a pull unpacked into a stage,
// committed with the raw files' install.
type archiveSet struct {
	stage       *unpack.Stage
	files       []unpack.File
	transferred int64
}

// unpackArchives unpacks the archive layers, already verified in the
// cache, into a stage beside dir that no raw layer's path may be written
// by; the caller commits it once the raw files are in place. Each archive
// is read as a stream from its cached blob and checked again against its
// digest (and its uncompressed digest, when declared) as it is read.
func (c *Client) unpackArchives(ctx context.Context, dir string, raw []manifests.File, archives []manifests.LayerPlan) (*unpack.Stage, []unpack.File, error) {
	stage, err := unpack.NewStage(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range raw {
		if err := stage.Claim(f.Path); err != nil {
			_ = stage.Discard()
			return nil, nil, err
		}
	}
	var free int64
	if n, err := diskspace.Free(filepath.Dir(dir)); err == nil {
		free = n
	}
	var all []unpack.File
	for _, l := range archives {
		files, err := c.unpackOne(ctx, stage, l, free)
		if err != nil {
			_ = stage.Discard()
			return nil, nil, err
		}
		all = append(all, files...)
	}
	return stage, all, nil
}

func (c *Client) unpackOne(ctx context.Context, stage *unpack.Stage, l manifests.LayerPlan, free int64) ([]unpack.File, error) {
	f, err := os.Open(c.cache.BlobPath(l.Descriptor.Digest))
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", l.Index, err)
	}
	defer f.Close()
	c.cache.touchBlob(l.Descriptor.Digest)
	return stage.Unpack(ctx, f, unpack.LayerOf(l), unpack.Limits{MaxBytes: free})
}
