package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
)

// bucket is a repository in an S3 bucket holding the registry/storage
// layout, written and read with no registry in between: a registry serving
// the bucket (modelctl serve --storage s3://BUCKET/PREFIX) then serves what
// was pushed here, and the other way round. Its primitives (backend) are
// calls of the storage layer.
type bucket struct {
	c     *Client
	ref   Reference
	store *storage.Store
	name  string
}

// openBucket connects to the bucket of an s3:// reference. Endpoint and
// region come from Options (--s3-endpoint, --s3-region) or the
// environment, credentials from the AWS environment variables or the
// shared credentials file, as for `modelctl serve`.
func (c *Client) openBucket(ctx context.Context, ref Reference) (*bucket, error) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err := s3.New(sctx, s3.Config{Bucket: ref.Registry, Prefix: ref.Prefix, Endpoint: c.opts.S3Endpoint, Region: c.opts.S3Region})
	if err != nil {
		return nil, fmt.Errorf("%s: open the bucket: %w", ref, err)
	}
	return &bucket{c: c, ref: ref, store: storage.NewStore(d), name: ref.Repository}, nil
}

func (b *bucket) repository() string { return b.name }

func (b *bucket) location() string { return "s3://" + b.ref.Registry + "/" + b.ref.Prefix }

// notFound turns the storage layer's "not there" into ErrNotFound.
func notFound(what string, err error) error {
	if isStorageNotFound(err) {
		return fmt.Errorf("%s: %w (%v)", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (b *bucket) getManifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	info, body, err := b.store.GetManifest(ctx, b.name, reference)
	if err != nil {
		return nil, "", "", notFound("manifest "+reference, err)
	}
	if len(body) > manifests.MaxManifestSize {
		return nil, "", "", fmt.Errorf("manifest %s: over the %d-byte limit", reference, manifests.MaxManifestSize)
	}
	return body, info.MediaType, info.Digest, nil
}

func (b *bucket) putManifest(ctx context.Context, tag string, data []byte, mediaType string) (digest.Digest, error) {
	info, err := b.store.PutManifest(ctx, storage.PutManifestRequest{
		Name: b.name, Reference: tag, ContentType: mediaType, Body: data, User: "modelctl push (s3)",
	})
	if err != nil {
		return "", err
	}
	return info.Digest, nil
}

func (b *bucket) blobExists(ctx context.Context, d digest.Digest) (bool, error) {
	_, err := b.store.StatBlob(ctx, b.name, d)
	switch {
	case err == nil:
		return true, nil
	case isStorageNotFound(err):
		return false, nil
	}
	return false, err
}

// mountBlob links a blob another repository of the bucket holds.
func (b *bucket) mountBlob(ctx context.Context, d digest.Digest) (bool, error) {
	if _, err := b.store.StatGlobalBlob(ctx, d); err != nil {
		return false, nil
	}
	return b.store.LinkBlob(ctx, b.name, d) == nil, nil
}

func (b *bucket) openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error) {
	rc, _, err := b.store.OpenBlob(ctx, b.name, d, off)
	if err != nil {
		return nil, notFound("blob "+d.String(), err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, end-off), rc}, nil
}

// bucketUpload is an upload session of the store, kept in the bucket: a
// push killed part-way continues from its committed offset.
type bucketUpload struct {
	b   *bucket
	sid string
}

// bucketUploadPrefix marks a bucket session in the upload state.
const bucketUploadPrefix = "s3-upload:"

func (b *bucket) startUpload(ctx context.Context) (upload, error) {
	info, err := b.store.StartUpload(ctx, b.name)
	if err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	return &bucketUpload{b: b, sid: info.ID}, nil
}

func (b *bucket) resumeUpload(ctx context.Context, id string) (upload, int64, error) {
	sid, ok := strings.CutPrefix(id, bucketUploadPrefix)
	if !ok {
		return nil, 0, fmt.Errorf("upload %q: %w", id, errUploadGone)
	}
	u := &bucketUpload{b: b, sid: sid}
	n, err := u.status(ctx)
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

func (u *bucketUpload) id() string { return bucketUploadPrefix + u.sid }

func (u *bucketUpload) chunkSize() int64 {
	if n := u.b.c.opts.ChunkSize; n > 0 {
		return n
	}
	return DefaultChunkSize
}

func (u *bucketUpload) gone(err error) error {
	if errors.Is(err, storage.ErrUploadUnknown) {
		return fmt.Errorf("%w: %w", errUploadGone, err)
	}
	return err
}

func (u *bucketUpload) status(ctx context.Context) (int64, error) {
	info, err := u.b.store.UploadStatus(ctx, u.b.name, u.sid)
	if err != nil {
		return 0, u.gone(err)
	}
	return info.Offset, nil
}

func (u *bucketUpload) append(ctx context.Context, c chunk) (int64, error) {
	info, err := u.b.store.AppendUpload(ctx, u.b.name, u.sid, c.off, c.n, c.reader())
	if err != nil {
		return 0, u.gone(err)
	}
	return info.Offset, nil
}

func (u *bucketUpload) commit(ctx context.Context, d digest.Digest, body io.Reader, size int64) error {
	start := int64(-1)
	if body != nil {
		start = 0
	}
	if _, err := u.b.store.CompleteUpload(ctx, u.b.name, u.sid, d, start, body); err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) {
			return fmt.Errorf("%w: %w", errDigestRefused, err)
		}
		return u.gone(err)
	}
	return nil
}

// ListS3 lists what an s3:// location for ls holds: the repositories under
// s3://BUCKET/PREFIX, or the tags of s3://BUCKET/PREFIX/REPO.
func (c *Client) ListS3(ctx context.Context, location string) ([]string, error) {
	ref, err := ParseS3Location(location)
	if err != nil {
		return nil, err
	}
	b, err := c.openBucket(ctx, ref)
	if err != nil {
		return nil, err
	}
	if ref.Repository == "" {
		names, err := b.store.Catalog(ctx, -1, "")
		if err != nil {
			return nil, fmt.Errorf("list repositories of %s: %w", location, err)
		}
		return names, nil
	}
	tags, err := b.store.Tags(ctx, ref.Repository, -1, "")
	if err != nil {
		if errors.Is(err, storage.ErrNameUnknown) {
			return nil, fmt.Errorf("list tags of %s: %w: no such repository in the bucket (modelctl ls s3://%s/%s lists them)", location, ErrNotFound, ref.Registry, ref.Prefix)
		}
		return nil, fmt.Errorf("list tags of %s: %w", location, err)
	}
	return tags, nil
}
