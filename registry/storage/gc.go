package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// GCResult reports a garbage collection.
type GCResult struct {
	// Kept is the number of blobs some repository still references.
	Kept int
	// Deleted lists the blobs removed (or, in a dry run, that would be).
	Deleted []digest.Digest
	// BytesFreed is their total size.
	BytesFreed int64
	// Young counts unreferenced blobs spared because they are newer than
	// the grace period (an upload may be about to link them).
	Young int
}

// GarbageCollect removes blob content that no repository references: no
// blob link (a pushed layer or config) and no manifest revision points at
// it. Deleting blobs, manifests or repositories only unlinks them; this is
// what frees the space. Content younger than grace is kept, because an
// upload completing right now has moved its data into place but not yet
// linked it. With dryRun nothing is deleted.
func (s *Store) GarbageCollect(ctx context.Context, grace time.Duration, dryRun bool) (GCResult, error) {
	var res GCResult
	marked, err := s.markReferenced(ctx)
	if err != nil {
		return res, fmt.Errorf("gc: mark: %w", err)
	}
	cutoff := time.Now().Add(-grace)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		prefixes, err := s.d.List(ctx, "blobs/"+string(alg))
		if err != nil {
			if IsNotFound(err) {
				continue
			}
			return res, err
		}
		for _, p := range prefixes {
			hexes, err := s.d.List(ctx, "blobs/"+string(alg)+"/"+p)
			if err != nil {
				if IsNotFound(err) {
					continue
				}
				return res, err
			}
			for _, h := range hexes {
				d := digest.NewDigestFromEncoded(alg, h)
				if d.Validate() != nil {
					continue // not ours; leave it alone
				}
				if marked[d] {
					res.Kept++
					continue
				}
				fi, err := s.d.Stat(ctx, blobDataPath(d))
				if err != nil {
					if IsNotFound(err) {
						continue
					}
					return res, err
				}
				if fi.ModTime.After(cutoff) {
					res.Young++
					continue
				}
				if !dryRun {
					if err := s.d.Delete(ctx, "blobs/"+string(alg)+"/"+p+"/"+h); err != nil && !IsNotFound(err) {
						return res, fmt.Errorf("gc: delete %s: %w", d, err)
					}
				}
				res.Deleted = append(res.Deleted, d)
				res.BytesFreed += fi.Size
			}
		}
	}
	return res, nil
}

// markReferenced collects every digest a repository links: its blobs and
// its manifest revisions.
func (s *Store) markReferenced(ctx context.Context) (map[digest.Digest]bool, error) {
	repos, err := s.Catalog(ctx, -1, "")
	if err != nil {
		return nil, err
	}
	marked := map[digest.Digest]bool{}
	for _, name := range repos {
		for _, dir := range []string{repoPath(name) + "/_layers", repoPath(name) + "/_manifests/revisions"} {
			algs, err := s.d.List(ctx, dir)
			if err != nil {
				if IsNotFound(err) {
					continue
				}
				return nil, err
			}
			for _, alg := range algs {
				hexes, err := s.d.List(ctx, dir+"/"+alg)
				if err != nil && !IsNotFound(err) {
					return nil, err
				}
				for _, h := range hexes {
					d := digest.NewDigestFromEncoded(digest.Algorithm(alg), h)
					if err := d.Validate(); err != nil {
						return nil, errors.Join(fmt.Errorf("gc: corrupt link %s/%s/%s", dir, alg, h), err)
					}
					// A deleted link can leave its directory behind.
					if _, err := s.d.Stat(ctx, dir+"/"+alg+"/"+h+"/link"); err != nil {
						if IsNotFound(err) {
							continue
						}
						return nil, err
					}
					marked[d] = true
					if strings.HasSuffix(dir, "/revisions") {
						if err := s.markManifestReferences(ctx, d, marked); err != nil {
							return nil, err
						}
					}
				}
			}
		}
	}
	return marked, nil
}

// markManifestReferences marks the config, layers and child manifests of a
// live manifest, so deleting a blob link never breaks a manifest that still
// uses the blob.
func (s *Store) markManifestReferences(ctx context.Context, d digest.Digest, marked map[digest.Digest]bool) error {
	body, err := s.d.GetContent(ctx, blobDataPath(d), s.MaxManifestSize)
	if err != nil {
		if IsNotFound(err) {
			return nil
		}
		return err
	}
	var m manifestFields
	if err := json.Unmarshal(body, &m); err != nil {
		return nil // not JSON we understand: nothing to mark beyond itself
	}
	if m.Config != nil {
		marked[m.Config.Digest] = true
	}
	for _, l := range m.Layers {
		marked[l.Digest] = true
	}
	for _, c := range m.Manifests {
		marked[c.Digest] = true
	}
	return nil
}
