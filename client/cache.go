package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/atomicfile"
)

// Cache is the local state of the client, one directory:
//
//	blobs/sha256/HEX   verified blobs, read-only, hardlinked into installs
//	stamps/HEX         size and mtime of a blob when it was verified
//	partial/HEX        downloads in progress, with HEX.json their progress
//	digests/KEY        digest of a local file, keyed by path/size/mtime/inode
//	uploads/KEY.json   upload sessions in progress (URL, offset, hash state)
//	locations/HEX      registry/repo pairs known to hold a blob (for mounts)
type Cache struct {
	dir string
}

// OpenCache creates the cache layout under dir.
func OpenCache(dir string) (*Cache, error) {
	for _, sub := range []string{"blobs/sha256", "stamps", "partial", "digests", "uploads", "locations", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create cache directory %s: %w", dir, Explain(err, ""))
		}
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache's root directory.
func (c *Cache) Dir() string { return c.dir }

// BlobPath is where a verified blob lives.
func (c *Cache) BlobPath(d digest.Digest) string {
	return filepath.Join(c.dir, "blobs", "sha256", d.Encoded())
}

// HasBlob reports whether the cache holds d, unchanged since it was
// verified. Installs hardlink cache blobs, so a tool that rewrites an
// installed file in place (onnx's shape inference does) rewrites the cache
// blob too: the size and mtime recorded when the blob was verified catch
// that, and the blob is dropped and fetched again. `modelctl verify`
// re-hashes.
func (c *Cache) HasBlob(d digest.Digest, size int64) bool {
	p := c.BlobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(c.stampPath(d))
	if err == nil && fi.Mode().IsRegular() && fi.Size() == size && string(b) == stamp(fi) {
		return true
	}
	os.Remove(p)
	os.Remove(c.stampPath(d))
	return false
}

func (c *Cache) stampPath(d digest.Digest) string {
	return filepath.Join(c.dir, "stamps", d.Encoded())
}

func stamp(fi fs.FileInfo) string {
	return fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
}

// addBlob moves a verified file into the cache, read-only, and records its
// stamp.
func (c *Cache) addBlob(d digest.Digest, verified string) error {
	if err := os.Chmod(verified, 0o444); err != nil {
		return err
	}
	fi, err := os.Stat(verified)
	if err != nil {
		return err
	}
	if err := c.writeFile(c.stampPath(d), []byte(stamp(fi)), false); err != nil {
		return err
	}
	if err := atomicfile.Rename(verified, c.BlobPath(d)); err != nil {
		return fmt.Errorf("move %s into the cache: %w", d, err)
	}
	_ = atomicfile.SyncDir(filepath.Dir(c.BlobPath(d)))
	return nil
}

func keyName(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:20])
}

// fileKey identifies the content of a local file without reading it: a
// change of path, size, mtime or inode (a file replaced by rename) makes a
// new key.
func fileKey(path string, fi fs.FileInfo) string {
	dev, ino := fileID(fi)
	return keyName(path, fmt.Sprint(fi.Size()), fmt.Sprint(fi.ModTime().UnixNano()), fmt.Sprint(dev), fmt.Sprint(ino))
}

// LookupDigest returns the cached digest of a file, if it is unchanged.
func (c *Cache) LookupDigest(path string, fi fs.FileInfo) (digest.Digest, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "digests", fileKey(path, fi)))
	if err != nil {
		return "", false
	}
	d := digest.Digest(strings.TrimSpace(string(b)))
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// ForgetDigest drops the recorded digest of a file.
func (c *Cache) ForgetDigest(path string, fi fs.FileInfo) {
	os.Remove(filepath.Join(c.dir, "digests", fileKey(path, fi)))
}

// StoreDigest records the digest of a file.
func (c *Cache) StoreDigest(path string, fi fs.FileInfo, d digest.Digest) error {
	return c.writeFile(filepath.Join(c.dir, "digests", fileKey(path, fi)), []byte(d.String()+"\n"), false)
}

// writeFile replaces name atomically. Small state files skip fsync: they
// must survive kill -9 (the page cache does), and a state file lost in a
// power cut only costs a re-hash or a re-send.
func (c *Cache) writeFile(name string, data []byte, sync bool) error {
	if err := atomicfile.WriteFile(name, data, 0o644, sync); err != nil {
		return fmt.Errorf("write %s: %w", name, Explain(err, ""))
	}
	return nil
}

func (c *Cache) readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (c *Cache) writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.writeFile(name, b, false)
}

// AddLocation records that host/repo holds d, so a later push to another
// repository of that registry can mount instead of upload.
func (c *Cache) AddLocation(d digest.Digest, host, repo string) {
	name := filepath.Join(c.dir, "locations", d.Encoded())
	var locs []string
	_ = c.readJSON(name, &locs)
	loc := host + "/" + repo
	for _, l := range locs {
		if l == loc {
			return
		}
	}
	locs = append(locs, loc)
	if len(locs) > 16 {
		locs = locs[len(locs)-16:]
	}
	_ = c.writeJSON(name, locs)
}

// Locations returns the repositories of host known to hold d.
func (c *Cache) Locations(d digest.Digest, host string) []string {
	var locs []string
	_ = c.readJSON(filepath.Join(c.dir, "locations", d.Encoded()), &locs)
	var out []string
	for _, l := range locs {
		if r, ok := strings.CutPrefix(l, host+"/"); ok {
			out = append(out, r)
		}
	}
	return out
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
