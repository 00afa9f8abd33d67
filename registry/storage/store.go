package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Store is the registry's view of a Driver: repositories, blobs, manifests,
// tags and upload sessions, laid out as described in paths.go. It holds
// nothing but caches that are checked against the driver, so any number of
// processes can serve one bucket.
type Store struct {
	d Driver
	// MaxManifestSize caps manifests (the spec suggests at least 4 MiB).
	MaxManifestSize int64
	// CheckpointBytes is how much of one request's upload body is received
	// between two saves of the session state: a server killed mid-request
	// loses at most this much of what it had received.
	CheckpointBytes int64

	// links remembers tag links read for whole-repository views, by the
	// version the driver gave them (TagDigests).
	links linkCache

	// TagIndexReconcile is how often TagDigests of a repository lists the
	// tag links to check the tag index (0: DefaultTagIndexReconcile;
	// negative: only the first time in this process).
	TagIndexReconcile time.Duration
	reconcileMu       sync.Mutex
	reconciled        map[string]time.Time
}

// DefaultCheckpointBytes is the default Store.CheckpointBytes.
const DefaultCheckpointBytes = 128 << 20

func (s *Store) checkpointBytes() int64 {
	if s.CheckpointBytes > 0 {
		return s.CheckpointBytes
	}
	return DefaultCheckpointBytes
}

// DefaultMaxManifestSize is the largest manifest accepted: 4 MiB.
const DefaultMaxManifestSize = 4 << 20

// smallObjectLimit bounds every metadata object the layout reads.
const smallObjectLimit = 64 << 10

// NewStore returns the layout over d.
func NewStore(d Driver) *Store {
	return &Store{d: d, MaxManifestSize: DefaultMaxManifestSize}
}

// Driver is the driver under the store.
func (s *Store) Driver() Driver { return s.d }

// BlobInfo describes a blob.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
}

// StatBlob returns the size of a blob linked into repository name.
func (s *Store) StatBlob(ctx context.Context, name string, d digest.Digest) (BlobInfo, error) {
	if _, err := s.d.Stat(ctx, layerLinkPath(name, d)); err != nil {
		if IsNotFound(err) {
			return BlobInfo{}, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
		}
		return BlobInfo{}, err
	}
	return s.statBlobData(ctx, d)
}

// StatGlobalBlob returns the size of a blob in any repository.
func (s *Store) StatGlobalBlob(ctx context.Context, d digest.Digest) (BlobInfo, error) {
	return s.statBlobData(ctx, d)
}

func (s *Store) statBlobData(ctx context.Context, d digest.Digest) (BlobInfo, error) {
	fi, err := s.d.Stat(ctx, blobDataPath(d))
	if err != nil {
		if IsNotFound(err) {
			return BlobInfo{}, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
		}
		return BlobInfo{}, err
	}
	return BlobInfo{Digest: d, Size: fi.Size}, nil
}

// OpenBlob opens a blob of repository name at offset.
func (s *Store) OpenBlob(ctx context.Context, name string, d digest.Digest, offset int64) (io.ReadCloser, BlobInfo, error) {
	info, err := s.StatBlob(ctx, name, d)
	if err != nil {
		return nil, BlobInfo{}, err
	}
	r, err := s.d.Reader(ctx, blobDataPath(d), offset)
	if err != nil {
		if IsNotFound(err) {
			return nil, BlobInfo{}, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
		}
		return nil, BlobInfo{}, err
	}
	return r, info, nil
}

// BlobPath is the driver path of a blob's content, for drivers that can hand
// out direct URLs.
func BlobPath(d digest.Digest) string { return blobDataPath(d) }

// LinkBlob makes an existing blob part of repository name (a cross-repository
// mount, or the end of an upload).
func (s *Store) LinkBlob(ctx context.Context, name string, d digest.Digest) error {
	if _, err := s.statBlobData(ctx, d); err != nil {
		return err
	}
	return s.d.PutContent(ctx, layerLinkPath(name, d), []byte(d))
}

// DeleteBlob removes a blob from repository name. The content stays until
// garbage collection, since other repositories may share it.
func (s *Store) DeleteBlob(ctx context.Context, name string, d digest.Digest) error {
	if err := s.d.Delete(ctx, layerLinkPath(name, d)); err != nil {
		if IsNotFound(err) {
			return fmt.Errorf("%w: %s", ErrBlobUnknown, d)
		}
		return err
	}
	return nil
}

// PutBlob stores content read from r as a blob of repository name, verifying
// it against want (when not empty) and returning its digest. It is the
// one-request path (monolithic uploads, clients writing a bucket directly).
func (s *Store) PutBlob(ctx context.Context, name string, want digest.Digest, r io.Reader) (BlobInfo, error) {
	u, err := s.StartUpload(ctx, name)
	if err != nil {
		return BlobInfo{}, err
	}
	info, err := s.CompleteUpload(ctx, name, u.ID, want, -1, r)
	if err != nil {
		_ = s.CancelUpload(context.WithoutCancel(ctx), name, u.ID)
	}
	return info, err
}

// RepositoryExists reports whether name has any content.
func (s *Store) RepositoryExists(ctx context.Context, name string) (bool, error) {
	_, err := s.d.Stat(ctx, repoPath(name))
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Catalog lists repository names in lexical order, at most n (n < 0: all)
// after last.
func (s *Store) Catalog(ctx context.Context, n int, last string) ([]string, error) {
	var names []string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		dir := "repositories"
		if prefix != "" {
			dir += "/" + prefix
		}
		children, err := s.d.List(ctx, dir)
		if err != nil {
			if IsNotFound(err) {
				return nil
			}
			return err
		}
		isRepo := false
		for _, c := range children {
			if isReserved(c) {
				isRepo = true
				continue
			}
			sub := c
			if prefix != "" {
				sub = prefix + "/" + c
			}
			if err := walk(sub); err != nil {
				return err
			}
		}
		if isRepo && prefix != "" {
			names = append(names, prefix)
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	sort.Strings(names)
	return paginate(names, n, last), nil
}

func paginate(sorted []string, n int, last string) []string {
	start := 0
	if last != "" {
		start = sort.SearchStrings(sorted, last)
		if start < len(sorted) && sorted[start] == last {
			start++
		}
	}
	out := sorted[start:]
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return append([]string(nil), out...)
}

func (s *Store) getJSON(ctx context.Context, path string, v any) error {
	b, err := s.d.GetContent(ctx, path, smallObjectLimit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("storage: corrupt %s: %w", path, err)
	}
	return nil
}

// ignoreNotFound turns a not-found error into nil, for idempotent deletes.
func ignoreNotFound(err error) error {
	if IsNotFound(err) {
		return nil
	}
	return err
}
