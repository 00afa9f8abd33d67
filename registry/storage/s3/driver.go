package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelctl/modelctl/registry/storage"
)

const driverName = "s3"

// Server-side copies (Move) of large objects go in parts, copyThreads at
// once.
const copyThreads = 8

// writesDir holds the state of resumable writes, beside the data under the
// prefix. Driver paths never have a component starting with ".", so no path
// can reach it.
const writesDir = ".s3-writes"

// Driver is a storage.Driver on one bucket and prefix.
type Driver struct {
	cfg    Config
	core   *minio.Core
	client *minio.Client
	// base is "PREFIX/" or "" for the bucket's root.
	base string
	// conditional reports whether the store honours If-Match and
	// If-None-Match on PUT (probed by New).
	conditional bool
}

// ConditionalWrites reports whether the store honours conditional PUTs. When
// it does not, PutContentIf compares versions and then writes, which
// concurrent writers can race (see docs/s3.md); serve warns about it.
func (d *Driver) ConditionalWrites() bool { return d.conditional }

var (
	_ storage.Driver     = (*Driver)(nil)
	_ storage.Redirector = (*Driver)(nil)
)

// Name implements storage.Driver.
func (d *Driver) Name() string { return driverName }

// Config is the driver's configuration, defaults filled in, so that another
// driver over the same bucket can be opened with New.
func (d *Driver) Config() Config { return d.cfg }

// Client is the underlying minio-go client (benchmarks compare against it).
func (d *Driver) Client() *minio.Client { return d.client }

// key maps a path to its object key, refusing invalid paths.
func (d *Driver) key(p string) (string, error) {
	if !storage.ValidPath(p) {
		return "", &storage.InvalidPathError{Driver: driverName, Path: p}
	}
	return d.base + p, nil
}

// dirKey maps a directory path to the key prefix of its children; "" is
// the root.
func (d *Driver) dirKey(p string) (string, error) {
	if p == "" {
		return d.base, nil
	}
	k, err := d.key(p)
	if err != nil {
		return "", err
	}
	return k + "/", nil
}

func (d *Driver) notFound(p string) error {
	return &storage.PathNotFoundError{Driver: driverName, Path: p}
}

func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return true
	}
	return false
}

// mapErr turns an S3 error into the driver's: typed not-found, the context's
// own error when it was cancelled, else what failed and on what.
func (d *Driver) mapErr(ctx context.Context, op, p string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s %s: %w", driverName, op, p, ctx.Err())
	}
	if isNotFound(err) {
		return d.notFound(p)
	}
	return fmt.Errorf("%s: %s %s: %w", driverName, op, p, err)
}

// GetContent implements storage.Driver.
func (d *Driver) GetContent(ctx context.Context, p string, maxSize int64) ([]byte, error) {
	k, err := d.key(p)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, info, _, err := d.core.GetObject(ctx, d.cfg.Bucket, k, minio.GetObjectOptions{})
	if err != nil {
		return nil, d.mapErr(ctx, "get", p, err)
	}
	defer body.Close()
	if info.Size > maxSize {
		return nil, &storage.TooLargeError{Path: p, Size: info.Size, Limit: maxSize}
	}
	// The length came from the server; the buffer is bounded by maxSize.
	buf := make([]byte, 0, max(info.Size, 0))
	w := bytes.NewBuffer(buf)
	n, err := io.Copy(w, io.LimitReader(body, maxSize+1))
	if err != nil {
		return nil, d.mapErr(ctx, "get", p, err)
	}
	if n > maxSize {
		return nil, &storage.TooLargeError{Path: p, Size: n, Limit: maxSize}
	}
	return w.Bytes(), nil
}

// PutContent implements storage.Driver. A single PUT replaces an object
// atomically on S3.
func (d *Driver) PutContent(ctx context.Context, p string, data []byte) error {
	k, err := d.key(p)
	if err != nil {
		return err
	}
	return d.put(ctx, p, k, data, minio.PutObjectOptions{})
}

func (d *Driver) put(ctx context.Context, p, k string, data []byte, opts minio.PutObjectOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.mapErr(ctx, "put", p, d.putSigned(ctx, k, bytes.NewReader(data), int64(len(data)), opts))
}

// PutContentIf implements storage.Driver with S3 conditional writes:
// If-None-Match: * to create, If-Match: <etag> to replace. A store that
// ignores these headers gives no guarantee; see docs/s3.md.
func (d *Driver) PutContentIf(ctx context.Context, p string, data []byte, ifVersion string) error {
	k, err := d.key(p)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !d.conditional {
		return d.putIfEmulated(ctx, p, k, data, ifVersion)
	}
	var opts minio.PutObjectOptions
	if ifVersion == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifVersion)
	}
	err = d.putSigned(ctx, k, bytes.NewReader(data), int64(len(data)), opts)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: conditional put %s: %w", driverName, p, ctx.Err())
	case preconditionFailed(err),
		// If-Match on an object that does not exist.
		ifVersion != "" && isNotFound(err):
		return storage.ErrPreconditionFailed
	}
	return fmt.Errorf("%s: conditional put %s: %w", driverName, p, err)
}

func preconditionFailed(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed" ||
		// AWS answers 409 to the loser of two concurrent conditional writes.
		resp.StatusCode == http.StatusConflict || resp.Code == "ConditionalRequestConflict"
}

// putIfEmulated is PutContentIf on a store that ignores conditional
// headers: it checks the version, then writes. A writer that checks between
// another's check and write overwrites it (last writer wins).
func (d *Driver) putIfEmulated(ctx context.Context, p, k string, data []byte, ifVersion string) error {
	oi, err := d.client.StatObject(ctx, d.cfg.Bucket, k, minio.StatObjectOptions{})
	switch {
	case err != nil && !isNotFound(err):
		return d.mapErr(ctx, "conditional put", p, err)
	case err != nil && ifVersion != "", err == nil && oi.ETag != ifVersion:
		return storage.ErrPreconditionFailed
	}
	return d.put(ctx, p, k, data, minio.PutObjectOptions{})
}

// Reader implements storage.Driver with a ranged GET, streamed.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	k, err := d.key(p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, err
		}
	}
	body, _, _, err := d.core.GetObject(ctx, d.cfg.Bucket, k, opts)
	if err == nil {
		return body, nil
	}
	if offset > 0 && minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
		// At or past the end: an empty read, like a file seeked there,
		// provided the object exists.
		if _, serr := d.client.StatObject(ctx, d.cfg.Bucket, k, minio.StatObjectOptions{}); serr != nil {
			return nil, d.mapErr(ctx, "stat", p, serr)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	return nil, d.mapErr(ctx, "get", p, err)
}

// Stat implements storage.Driver: an object, else a non-empty prefix.
func (d *Driver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	if p == "" {
		return storage.FileInfo{Path: p, IsDir: true}, nil
	}
	k, err := d.key(p)
	if err != nil {
		return storage.FileInfo{}, err
	}
	oi, err := d.client.StatObject(ctx, d.cfg.Bucket, k, minio.StatObjectOptions{})
	if err == nil {
		return storage.FileInfo{Path: p, Size: oi.Size, ModTime: oi.LastModified, Version: oi.ETag}, nil
	}
	if !isNotFound(err) {
		return storage.FileInfo{}, d.mapErr(ctx, "stat", p, err)
	}
	for oi := range d.client.ListObjectsIter(ctx, d.cfg.Bucket, minio.ListObjectsOptions{Prefix: k + "/", MaxKeys: 1}) {
		if oi.Err != nil {
			return storage.FileInfo{}, d.mapErr(ctx, "stat", p, oi.Err)
		}
		return storage.FileInfo{Path: p, IsDir: true}, nil
	}
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	return storage.FileInfo{}, d.notFound(p)
}

// List implements storage.Driver with a delimited listing.
func (d *Driver) List(ctx context.Context, p string) ([]string, error) {
	prefix, err := d.dirKey(p)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names := []string{}
	found := false
	for oi := range d.client.ListObjectsIter(ctx, d.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if oi.Err != nil {
			return nil, d.mapErr(ctx, "list", p, oi.Err)
		}
		found = true
		name := strings.TrimSuffix(strings.TrimPrefix(oi.Key, prefix), "/")
		// Hidden names are the driver's own (resumable writes) or a
		// directory marker ("dir/" objects some tools create).
		if name == "" || strings.HasPrefix(name, ".") {
			continue
		}
		names = append(names, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !found && p != "" {
		return nil, d.notFound(p)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Move implements storage.Driver: a server-side copy (multipart past 5 GiB)
// and a delete of the source.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	ks, err := d.key(src)
	if err != nil {
		return err
	}
	kd, err := d.key(dst)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Objects over one copy part are copied as parts in parallel (and
	// past 5 GiB they must be): one CopyObject runs at a single stream's
	// speed on most stores.
	_, err = d.client.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: d.cfg.Bucket, Object: kd, PartSize: uint64(d.cfg.CopyPartSize), NumThreads: copyThreads},
		minio.CopySrcOptions{Bucket: d.cfg.Bucket, Object: ks})
	if err != nil {
		return d.mapErr(ctx, "move "+src+" to", dst, notFoundAs(err, d.notFound(src)))
	}
	if err := d.client.RemoveObject(ctx, d.cfg.Bucket, ks, minio.RemoveObjectOptions{}); err != nil {
		return d.mapErr(ctx, "move: remove source", src, err)
	}
	return nil
}

// notFoundAs replaces an S3 not-found with nf, so that the error names the
// path that was missing.
func notFoundAs(err, nf error) error {
	if isNotFound(err) {
		return nf
	}
	return err
}

// Delete implements storage.Driver: the object at p, every object below p/,
// and the writes in progress at or below p.
func (d *Driver) Delete(ctx context.Context, p string) error {
	k, err := d.key(p)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var keys []string
	if _, err := d.client.StatObject(ctx, d.cfg.Bucket, k, minio.StatObjectOptions{}); err == nil {
		keys = append(keys, k)
	} else if !isNotFound(err) {
		return d.mapErr(ctx, "delete", p, err)
	}
	below, err := d.listAll(ctx, k+"/")
	if err != nil {
		return d.mapErr(ctx, "delete", p, err)
	}
	for _, oi := range below {
		keys = append(keys, oi.Key)
	}
	if err := d.dropWrites(ctx, d.writesKey(p)); err != nil {
		return d.mapErr(ctx, "delete", p, err)
	}
	if len(keys) == 0 {
		return d.notFound(p)
	}
	return d.mapErr(ctx, "delete", p, d.removeKeys(ctx, keys))
}

// listAll lists every object below prefix, recursively.
func (d *Driver) listAll(ctx context.Context, prefix string) ([]minio.ObjectInfo, error) {
	var out []minio.ObjectInfo
	for oi := range d.client.ListObjectsIter(ctx, d.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, oi.Err
		}
		out = append(out, oi)
	}
	return out, ctx.Err()
}

// removeKeys deletes keys with multi-object deletes; a key already gone is
// not an error.
func (d *Driver) removeKeys(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if len(keys) == 1 {
		return d.client.RemoveObject(ctx, d.cfg.Bucket, keys[0], minio.RemoveObjectOptions{})
	}
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		ch <- minio.ObjectInfo{Key: k}
	}
	close(ch)
	var firstErr error
	for res := range d.client.RemoveObjectsWithResult(ctx, d.cfg.Bucket, ch, minio.RemoveObjectsOptions{}) {
		if res.Err != nil && !isNotFound(res.Err) && firstErr == nil {
			firstErr = fmt.Errorf("remove %s: %w", res.ObjectName, res.Err)
		}
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// RedirectURL implements storage.Redirector with a presigned GET.
func (d *Driver) RedirectURL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	k, err := d.key(p)
	if err != nil {
		return "", err
	}
	if expiry <= 0 || expiry > 7*24*time.Hour {
		return "", fmt.Errorf("%s: presign %s: expiry %v is outside (0, 7 days]", driverName, p, expiry)
	}
	u, err := d.client.PresignedGetObject(ctx, d.cfg.Bucket, k, expiry, nil)
	if err != nil {
		return "", d.mapErr(ctx, "presign", p, err)
	}
	return u.String(), nil
}
