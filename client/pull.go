package client

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

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
}

// Artifact is a resolved, validated model artifact.
type Artifact struct {
	Reference Reference
	Digest    digest.Digest
	Raw       []byte
	Manifest  *manifests.Manifest
	Config    *manifests.Model
	RawConfig []byte
}

// Resolve fetches and validates the manifest and config of ref.
func (c *Client) Resolve(ctx context.Context, ref Reference) (*Artifact, error) {
	r, ctx, err := c.source(ctx, ref)
	if err != nil {
		return nil, err
	}
	return c.resolve(ctx, r, ref)
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

func (c *Client) resolve(ctx context.Context, r backend, ref Reference) (*Artifact, error) {
	if ref.Reference() == "" {
		return nil, fmt.Errorf("%s: no tag or digest", ref)
	}
	raw, d, _, err := fetchManifest(ctx, r, ref.Reference(), ref.Digest)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			if ref.S3 {
				return nil, fmt.Errorf("%s: %w: no such tag or repository in the bucket", ref, err)
			}
			return nil, fmt.Errorf("%s: %w: no such tag or repository (modelctl ls %s/%s lists the tags)", ref, err, ref.Registry, ref.Repository)
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
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
	return &Artifact{Reference: ref, Digest: d, Raw: raw, Manifest: m, Config: model, RawConfig: cfg}, nil
}

// Pull installs the artifact ref into dir: every layer is fetched into the
// cache and verified first, and only then do files appear in dir, each
// complete (hardlinked from the cache, or copied, fsynced and renamed).
// A failed pull leaves dir as it was (and does not create it).
func (c *Client) Pull(ctx context.Context, ref Reference, dir string) (*PullResult, error) {
	r, ctx, err := c.source(ctx, ref)
	if err != nil {
		return nil, err
	}
	art, err := c.resolve(ctx, r, ref)
	if err != nil {
		return nil, err
	}
	files := art.Manifest.Files
	prog := newProgress(c.opts.Progress)
	transferred := make([]int64, len(files))
	g, gctx := errgroup.WithContext(ctx)
	// Large blobs already fetch several ranges each; two files at a time
	// keeps the connection count bounded.
	workers := c.parallel(ref)
	g.SetLimit(max(2, workers/2))
	// Two files with the same content are one blob: fetch it once (two
	// fetches would share one partial file).
	first := map[digest.Digest]bool{}
	for i, f := range files {
		if first[f.Digest] {
			continue
		}
		first[f.Digest] = true
		fp := prog.file(f.Path, f.Size)
		g.Go(func() error {
			n, err := c.fetchBlob(gctx, r, f, workers, fp)
			transferred[i] = n
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

	res := &PullResult{Reference: ref.String(), Digest: art.Digest}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	res.Dir = abs
	if err := c.install(abs, files); err != nil {
		return nil, fmt.Errorf("pull %s: install into %s: %w", ref, dir, err)
	}
	receipt := Receipt{Reference: ref.String(), Digest: art.Digest, InstalledAt: time.Now().UTC()}
	for i, f := range files {
		st := "downloaded"
		if transferred[i] == 0 && f.Size > 0 {
			st = "cached"
		}
		res.Files = append(res.Files, FileResult{Path: f.Path, Digest: f.Digest, Size: f.Size, Status: st, Transferred: transferred[i]})
		res.Size += f.Size
		res.Transferred += transferred[i]
		receipt.Files = append(receipt.Files, ReceiptFile{Path: f.Path, Digest: f.Digest, Size: f.Size})
	}
	res.Receipt = filepath.Join(abs, filepath.FromSlash(ReceiptPath))
	if err := writeReceipt(abs, &receipt); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return res, nil
}
