package s3

import (
	"context"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/modelctl/modelctl/registry/storage"
)

// Walk implements storage.Walker with a recursive listing: every object
// below dir with its size, time and ETag, 1,000 a request.
func (d *Driver) Walk(ctx context.Context, dir string) ([]storage.FileInfo, error) {
	prefix, err := d.dirKey(dir)
	if err != nil {
		return nil, err
	}
	var out []storage.FileInfo
	found := false
	for oi := range d.client.ListObjectsIter(ctx, d.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, d.mapErr(ctx, "walk", dir, oi.Err)
		}
		found = true
		rel := strings.TrimPrefix(oi.Key, prefix)
		if rel == "" || strings.HasSuffix(rel, "/") || hiddenPath(rel) {
			continue
		}
		out = append(out, storage.FileInfo{Path: dir + "/" + rel, Size: oi.Size, ModTime: oi.LastModified, Version: oi.ETag})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !found && dir != "" {
		return nil, d.notFound(dir)
	}
	return out, nil
}

// hiddenPath reports a path with a component the driver keeps for itself
// (resumable writes) or that no layout path has.
func hiddenPath(rel string) bool {
	for _, seg := range strings.Split(rel, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}
