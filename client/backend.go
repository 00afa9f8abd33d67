package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// backend is one repository where artifacts live: a repository of a
// registry (remote.go, over the OCI Distribution API) or of a bucket
// (bucket.go, the registry/storage layout written directly). It offers
// primitives only, each one request or one storage call with no retry and
// no verification; push, pull, resume, retry and verification are written
// once above them (this file, upload.go, download.go), as oras-go's content
// package is above its Storage.
type backend interface {
	// location names the backend in the upload state it leaves in the
	// cache ("host" or "s3://bucket/prefix").
	location() string
	// repository is the repository's name.
	repository() string
	// getManifest returns the manifest stored under reference (a tag or a
	// digest), at most manifests.MaxManifestSize bytes, with its media type
	// and the digest the backend claims for it ("" when it claims none).
	// One that is not there is ErrNotFound.
	getManifest(ctx context.Context, reference string) (body []byte, mediaType string, claimed digest.Digest, err error)
	// putManifest stores body under tag and returns the digest the backend
	// says it stored ("" when it says nothing).
	putManifest(ctx context.Context, tag string, body []byte, mediaType string) (digest.Digest, error)
	// blobExists reports whether the repository holds blob d.
	blobExists(ctx context.Context, d digest.Digest) (bool, error)
	// mountBlob links blob d into the repository from where the backend
	// knows it to be, without sending it; false when it cannot.
	mountBlob(ctx context.Context, d digest.Digest) (bool, error)
	// openRange streams bytes [off, end) of blob d, whose size is size.
	openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error)
	// startUpload opens an upload session.
	startUpload(ctx context.Context) (upload, error)
	// resumeUpload reopens the session id names and returns it with the
	// bytes the backend has committed; a session it no longer knows is an
	// error isUploadGone recognizes.
	resumeUpload(ctx context.Context, id string) (upload, int64, error)
}

// upload is an upload session of a backend.
type upload interface {
	// id names the session for resumeUpload (kept in the upload state).
	id() string
	// chunkSize is the size of one append.
	chunkSize() int64
	// status returns the bytes the backend has committed.
	status(ctx context.Context) (int64, error)
	// append sends c and returns the bytes the backend has committed. A
	// backend that takes no chunks answers errChunksRefused.
	append(ctx context.Context, c chunk) (int64, error)
	// commit completes the session as blob d, sending size bytes of body
	// first when body is not nil.
	commit(ctx context.Context, d digest.Digest, body io.Reader, size int64) error
}

// chunk is bytes [off, off+n) of a local file to send, fed to h (unless h
// is nil) and to the progress as they go.
type chunk struct {
	file   *os.File
	off, n int64
	h      hash.Hash
	prog   *fileProgress
}

// reader returns the chunk's bytes, hashed and counted as they are read.
func (c chunk) reader() io.Reader {
	return &hashingReader{r: io.NewSectionReader(c.file, c.off, c.n), h: c.h, prog: c.prog}
}

// errChunksRefused is a backend that takes blobs only in one request.
var errChunksRefused = errors.New("chunked uploads refused")

// errUploadGone wraps a session a backend no longer knows.
var errUploadGone = errors.New("upload session unknown")

// errDigestRefused wraps a commit refused because the bytes received hash
// to something else.
var errDigestRefused = errors.New("digest refused")

// fetchManifest gets a manifest by tag or digest and checks its digest:
// against want when it is set (a reference by digest), and against the
// digest the backend claims.
func fetchManifest(ctx context.Context, b backend, reference string, want digest.Digest) ([]byte, digest.Digest, string, error) {
	var body []byte
	var mediaType string
	var claimed digest.Digest
	err := retry(ctx, func() error {
		var err error
		body, mediaType, claimed, err = b.getManifest(ctx, reference)
		return err
	})
	if err != nil {
		return nil, "", "", err
	}
	alg := digest.Canonical
	if want != "" && want.Algorithm().Available() {
		alg = want.Algorithm()
	}
	got := alg.FromBytes(body)
	if want != "" && got != want {
		return nil, "", "", &DigestError{What: "manifest " + reference, Got: got.String(), Want: want.String()}
	}
	if strings.HasPrefix(string(claimed), alg.String()+":") && claimed != got {
		return nil, "", "", &DigestError{What: "manifest " + reference + " (the digest the registry sent)", Got: got.String(), Want: claimed.String()}
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.MediaType != "" {
		mediaType = probe.MediaType
	}
	return body, got, mediaType, nil
}

// fetchSmall reads a small blob (a config) whole, verified against its
// descriptor before anyone sees it.
func fetchSmall(ctx context.Context, b backend, d digest.Digest, size, limit int64) ([]byte, error) {
	if size > limit || size < 0 {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d-byte limit", d, size, limit)
	}
	var data []byte
	err := retry(ctx, func() error {
		rc, err := b.openRange(ctx, d, size, 0, size)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err = io.ReadAll(io.LimitReader(rc, size+1))
		if err != nil {
			return fmt.Errorf("read blob %s: %w", d, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("blob %s: got %d bytes, want %d", d, len(data), size)
	}
	if got := digest.FromBytes(data); got != d {
		return nil, &DigestError{What: "blob " + d.String(), Got: got.String(), Want: d.String()}
	}
	return data, nil
}

// pushSmall uploads small content (a config) in one request, unless the
// repository has it.
func pushSmall(ctx context.Context, b backend, d digest.Digest, data []byte) error {
	return retry(ctx, func() error {
		if ok, err := b.blobExists(ctx, d); err != nil || ok {
			return err
		}
		u, err := b.startUpload(ctx)
		if err != nil {
			return err
		}
		return u.commit(ctx, d, strings.NewReader(string(data)), int64(len(data)))
	})
}

// putManifest stores a manifest under tag and checks the digest the
// backend stored it under, when it says.
func putManifest(ctx context.Context, b backend, tag string, data []byte, mediaType string, want digest.Digest) error {
	return retry(ctx, func() error {
		got, err := b.putManifest(ctx, tag, data, mediaType)
		if err != nil {
			return err
		}
		if got != "" && got != want {
			return &DigestError{What: "manifest " + tag + " as stored", Got: got.String(), Want: want.String()}
		}
		return nil
	})
}

// retry runs op until it succeeds, fails for good, or maxAttempts pass:
// the one retry layer of the client's small requests (blob transfers keep
// their own loops, which resume from where they stopped).
func retry(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt >= maxAttempts || !isTransient(err) || ctx.Err() != nil {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// isStorageNotFound maps the storage layer's "not there" onto ErrNotFound.
func isStorageNotFound(err error) bool {
	return errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrNameUnknown) ||
		errors.Is(err, storage.ErrBlobUnknown) || storage.IsNotFound(err)
}
