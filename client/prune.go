package client

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// CachedBlob is one verified blob of the cache.
type CachedBlob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Installs is how many installed files share the blob's bytes
	// (hardlinks; -1 where the platform cannot tell). Installs copied
	// (small files, other filesystems) do not count: they do not need it.
	Installs int `json:"installs"`
	// LastUsed is when the blob was last fetched or installed.
	LastUsed time.Time `json:"lastUsed"`
}

// Blobs lists the cache's verified blobs, largest first.
func (c *Cache) Blobs() ([]CachedBlob, error) {
	dir := filepath.Join(c.dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []CachedBlob
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b := CachedBlob{Digest: d, Size: fi.Size(), Installs: -1, LastUsed: fi.ModTime()}
		if n, ok := linkCount(path, fi); ok {
			b.Installs = n - 1
		}
		if si, err := os.Stat(c.stampPath(d)); err == nil && si.ModTime().After(b.LastUsed) {
			b.LastUsed = si.ModTime()
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Size != out[j].Size {
			return out[i].Size > out[j].Size
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

// touchBlob records that d was just used (installed), for Prune.
func (c *Cache) touchBlob(d digest.Digest) {
	now := time.Now()
	_ = os.Chtimes(c.stampPath(d), now, now)
}

// PruneOptions choose what Prune removes.
type PruneOptions struct {
	// Unused is how long a blob no installation shares, or a download or
	// upload left unfinished, must have been untouched to be removed.
	Unused time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// PruneResult is what Prune removed (or would remove) and what it kept.
type PruneResult struct {
	Removed      []CachedBlob `json:"removed"`
	Freed        int64        `json:"freed"`
	Partials     int          `json:"partials"`
	PartialBytes int64        `json:"partialBytes"`
	Kept         int          `json:"kept"`
	KeptBytes    int64        `json:"keptBytes"`
	// Unjudged is set where the platform cannot count a blob's installs:
	// no blob is removed then.
	Unjudged bool `json:"unjudged,omitempty"`
}

// Prune removes the blobs no installed file shares (hardlink count 1) and
// that were not fetched or installed for opts.Unused, and downloads and
// uploads left unfinished for as long. An installation never depends on
// the cache (its files are links or copies), so pruning costs at most a
// download again: a rollback to a pruned version fetches it.
func (c *Cache) Prune(opts PruneOptions) (*PruneResult, error) {
	blobs, err := c.Blobs()
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-opts.Unused)
	res := &PruneResult{Removed: []CachedBlob{}}
	for _, b := range blobs {
		if b.Installs < 0 {
			res.Unjudged = true
		}
		if b.Installs != 0 || b.LastUsed.After(cutoff) {
			res.Kept++
			res.KeptBytes += b.Size
			continue
		}
		if !opts.DryRun {
			if err := os.Remove(c.BlobPath(b.Digest)); err != nil && !isNotExist(err) {
				return res, fmt.Errorf("remove %s: %w", b.Digest, err)
			}
			os.Remove(c.stampPath(b.Digest))
			os.Remove(filepath.Join(c.dir, "locations", b.Digest.Encoded()))
		}
		res.Removed = append(res.Removed, b)
		res.Freed += b.Size
	}
	// Unfinished downloads (HEX, HEX.json, HEX.lock) and upload sessions.
	for _, sub := range []string{"partial", "uploads"} {
		entries, err := os.ReadDir(filepath.Join(c.dir, sub))
		if err != nil {
			continue
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || !fi.Mode().IsRegular() || fi.ModTime().After(cutoff) {
				continue
			}
			if sub == "partial" && !strings.HasSuffix(e.Name(), ".json") && !strings.HasSuffix(e.Name(), lockSuffix) {
				res.Partials++
				res.PartialBytes += fi.Size()
			}
			if !opts.DryRun {
				os.Remove(filepath.Join(c.dir, sub, e.Name()))
			}
		}
	}
	return res, nil
}
