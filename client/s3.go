package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// was pushed here, and the other way round.
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
	endpoint := c.opts.S3Endpoint
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err := s3.New(sctx, s3.Config{Bucket: ref.Registry, Prefix: ref.Prefix, Endpoint: endpoint, Region: c.opts.S3Region})
	if err != nil {
		return nil, fmt.Errorf("%s: open the bucket: %w", ref, err)
	}
	return &bucket{c: c, ref: ref, store: storage.NewStore(d), name: ref.Repository}, nil
}

func (b *bucket) fetchManifest(ctx context.Context, reference string, want digest.Digest) ([]byte, digest.Digest, error) {
	_, body, err := b.store.GetManifest(ctx, b.name, reference)
	if err != nil {
		if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrNameUnknown) || storage.IsNotFound(err) {
			return nil, "", fmt.Errorf("manifest %s: %w (%v)", reference, ErrNotFound, err)
		}
		return nil, "", fmt.Errorf("manifest %s: %w", reference, err)
	}
	if len(body) > manifests.MaxManifestSize {
		return nil, "", fmt.Errorf("manifest %s: over the %d-byte limit", reference, manifests.MaxManifestSize)
	}
	got := digest.FromBytes(body)
	if want != "" && got != want {
		return nil, "", &DigestError{What: "manifest " + reference, Got: got.String(), Want: want.String()}
	}
	return body, got, nil
}

func (b *bucket) fetchSmall(ctx context.Context, d digest.Digest, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d-byte limit", d, size, limit)
	}
	rc, err := b.openRange(ctx, d, size, 0, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("blob %s: got %d bytes, want %d", d, len(data), size)
	}
	if got := digest.FromBytes(data); got != d {
		return nil, &DigestError{What: "blob " + d.String(), Got: got.String(), Want: d.String()}
	}
	return data, nil
}

func (b *bucket) openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error) {
	rc, _, err := b.store.OpenBlob(ctx, b.name, d, off)
	if err != nil {
		if errors.Is(err, storage.ErrBlobUnknown) {
			return nil, fmt.Errorf("blob %s: %w (%v)", d, ErrNotFound, err)
		}
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, end-off), rc}, nil
}

func (b *bucket) pushBytes(ctx context.Context, d digest.Digest, data []byte) error {
	if _, err := b.store.StatBlob(ctx, b.name, d); err == nil {
		return nil
	}
	_, err := b.store.PutBlob(ctx, b.name, d, bytes.NewReader(data))
	return err
}

func (b *bucket) putManifest(ctx context.Context, tag string, data []byte, want digest.Digest) error {
	info, err := b.store.PutManifest(ctx, storage.PutManifestRequest{
		Name: b.name, Reference: tag, ContentType: manifests.MediaTypeImageManifest, Body: data, User: "modelctl push (s3)",
	})
	if err != nil {
		return err
	}
	if info.Digest != want {
		return &DigestError{What: "manifest " + tag + " as stored", Got: info.Digest.String(), Want: want.String()}
	}
	return nil
}

// pushFile writes one file into the bucket's layout through the store's
// upload sessions, which are stored in the bucket: a push killed part-way
// continues from the session's committed offset, like a registry upload.
func (b *bucket) pushFile(ctx context.Context, f *localFile, prog *fileProgress) (blobResult, error) {
	c := b.c
	if f.Digest != "" {
		if _, err := b.store.StatBlob(ctx, b.name, f.Digest); err == nil {
			prog.done()
			return blobResult{Digest: f.Digest, Status: StatusExists}, nil
		}
		if _, err := b.store.StatGlobalBlob(ctx, f.Digest); err == nil {
			if err := b.store.LinkBlob(ctx, b.name, f.Digest); err == nil {
				prog.done()
				return blobResult{Digest: f.Digest, Status: StatusMounted}, nil
			}
		}
	}
	file, err := os.Open(f.Source)
	if err != nil {
		return blobResult{}, fmt.Errorf("open %s: %w", f.Source, err)
	}
	defer file.Close()
	size := f.Info.Size()
	statePath := filepath.Join(c.cache.dir, "uploads", keyName("s3://"+b.ref.Registry+"/"+b.ref.Prefix, b.name, fileKey(f.Source, f.Info))+".json")
	h := sha256.New()
	var hashed, off int64
	var id string
	res := blobResult{Status: StatusUploaded}
	var st uploadState
	if err := c.cache.readJSON(statePath, &st); err == nil && st.Size == size && strings.HasPrefix(st.Location, "s3-upload:") {
		sid := strings.TrimPrefix(st.Location, "s3-upload:")
		if info, err := b.store.UploadStatus(ctx, b.name, sid); err == nil && info.Offset <= size {
			id, off = sid, info.Offset
			if unmarshalHash(h, st.Hash) {
				hashed = st.Offset
			} else {
				h.Reset()
			}
			if off > 0 {
				res.Status, res.ResumedFrom = StatusResumed, off
			}
		}
	}
	if id == "" {
		info, err := b.store.StartUpload(ctx, b.name)
		if err != nil {
			return blobResult{}, fmt.Errorf("start upload: %w", err)
		}
		id = info.ID
		_ = c.cache.writeJSON(statePath, uploadState{Location: "s3-upload:" + id, Size: size})
	}
	prog.set(off)
	chunk := c.opts.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	for attempt := 0; off < size; {
		if err := catchUp(ctx, file, h, &hashed, off); err != nil {
			return blobResult{}, err
		}
		checkpoint := marshalHash(h)
		n := min(chunk, size-off)
		body := &hashingReader{r: io.NewSectionReader(file, off, n), h: h, prog: prog}
		info, err := b.store.AppendUpload(ctx, b.name, id, off, n, body)
		if err == nil && info.Offset == off+n {
			res.Sent += n
			off, hashed = info.Offset, off+n
			_ = c.cache.writeJSON(statePath, uploadState{Location: "s3-upload:" + id, Size: size, Offset: off, Hash: marshalHash(h)})
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return blobResult{}, ctx.Err()
		}
		attempt++
		if attempt >= maxAttempts {
			return blobResult{}, fmt.Errorf("upload %s to the bucket: %w", f.Path, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return blobResult{}, err
		}
		unmarshalHash(h, checkpoint)
		hashed = off
		st, serr := b.store.UploadStatus(ctx, b.name, id)
		if serr != nil {
			return blobResult{}, fmt.Errorf("upload %s to the bucket: %w", f.Path, serr)
		}
		off = st.Offset
		prog.set(off)
	}
	if err := catchUp(ctx, file, h, &hashed, size); err != nil {
		return blobResult{}, err
	}
	d := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	if err := checkUnchanged(f); err != nil {
		return blobResult{}, err
	}
	if _, err := b.store.CompleteUpload(ctx, b.name, id, d, -1, nil); err != nil {
		return blobResult{}, fmt.Errorf("upload %s: commit %s: %w", f.Path, d, err)
	}
	os.Remove(statePath)
	_ = c.cache.StoreDigest(f.Source, f.Info, d)
	res.Digest = d
	prog.done()
	return res, nil
}

// ListS3 lists what an s3:// location for ls holds: the repositories under
// s3://BUCKET/PREFIX, or the tags of s3://BUCKET/PREFIX/REPO.
func (c *Client) ListS3(ctx context.Context, location string) ([]string, error) {
	rest, ok := strings.CutPrefix(location, "s3://")
	if !ok {
		return nil, fmt.Errorf("%q is not an s3:// location", location)
	}
	rest = strings.TrimSuffix(rest, "/")
	bucket, rest, _ := strings.Cut(rest, "/")
	prefix, repo, _ := strings.Cut(rest, "/")
	if bucket == "" || prefix == "" || strings.ContainsAny(bucket+prefix, ":@") {
		return nil, fmt.Errorf("%q: want s3://bucket/prefix[/repo]", location)
	}
	ref := Reference{S3: true, Registry: bucket, Prefix: prefix}
	if repo != "" {
		r, err := ParseReference("s3://" + bucket + "/" + prefix + "/" + repo)
		if err != nil || r.Tag != "" || r.Digest != "" {
			return nil, fmt.Errorf("%q: want s3://bucket/prefix[/repo] (no tag or digest)", location)
		}
		ref = r
	}
	b, err := c.openBucket(ctx, ref)
	if err != nil {
		return nil, err
	}
	if repo == "" {
		names, err := b.store.Catalog(ctx, -1, "")
		if err != nil {
			return nil, fmt.Errorf("list repositories of %s: %w", location, err)
		}
		return names, nil
	}
	tags, err := b.store.Tags(ctx, ref.Repository, -1, "")
	if err != nil {
		if errors.Is(err, storage.ErrNameUnknown) {
			return nil, fmt.Errorf("list tags of %s: %w: no such repository in the bucket (modelctl ls s3://%s/%s lists them)", location, ErrNotFound, bucket, prefix)
		}
		return nil, fmt.Errorf("list tags of %s: %w", location, err)
	}
	return tags, nil
}
