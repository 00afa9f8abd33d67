package s3

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// CleanupResult counts what Cleanup removed.
type CleanupResult struct {
	// Writes is the number of abandoned resumable writes removed (their
	// state, segments and multipart upload).
	Writes int
	// Uploads is the number of multipart uploads aborted that no write's
	// state named (a process died before its first Close).
	Uploads int
	// Objects is the number of stray segment objects removed from writes
	// still in progress.
	Objects int
}

// Cleanup expires abandoned writes: a write whose state was last saved
// before olderThan ago is cancelled (its multipart upload aborted, its
// directory removed), and multipart uploads under the prefix initiated
// before then that no live write names are aborted. The registry calls it
// periodically; olderThan must exceed the longest pause a client may take
// between two chunks of one upload.
func (d *Driver) Cleanup(ctx context.Context, olderThan time.Duration) (CleanupResult, error) {
	var res CleanupResult
	if olderThan <= 0 {
		return res, fmt.Errorf("%s: cleanup: age %v must be positive", driverName, olderThan)
	}
	cutoff := time.Now().Add(-olderThan)
	objs, err := d.listAll(ctx, d.base+writesDir+"/")
	if err != nil {
		return res, fmt.Errorf("%s: cleanup: list writes: %w", driverName, err)
	}
	type writeDir struct {
		state *minio.ObjectInfo
		objs  []minio.ObjectInfo
	}
	dirs := map[string]*writeDir{}
	var order []string
	var drop []string
	for _, oi := range objs {
		i := strings.LastIndex(oi.Key, writeDirMark)
		if i < 0 {
			// A start-up probe object that outlived its process.
			if strings.HasPrefix(oi.Key, d.base+writesDir+"/probe-") && oi.LastModified.Before(cutoff) {
				drop = append(drop, oi.Key)
			}
			continue
		}
		dir := oi.Key[:i+len(writeDirMark)]
		wd := dirs[dir]
		if wd == nil {
			wd = &writeDir{}
			dirs[dir] = wd
			order = append(order, dir)
		}
		wd.objs = append(wd.objs, oi)
		if oi.Key == dir+stateName {
			wd.state = &wd.objs[len(wd.objs)-1]
		}
	}
	live := map[string]bool{}
	for _, dir := range order {
		wd := dirs[dir]
		switch {
		case wd.state != nil && wd.state.LastModified.Before(cutoff):
			if err := d.dropWrites(ctx, dir); err != nil {
				return res, fmt.Errorf("%s: cleanup: %s: %w", driverName, dir, err)
			}
			res.Writes++
		case wd.state != nil:
			st, found, err := d.readState(ctx, dir)
			if err != nil || !found {
				// Changed under us (committed, cancelled): next pass.
				continue
			}
			if st.UploadID != "" {
				live[st.UploadID] = true
			}
			named := map[string]bool{stateName: true}
			for _, cp := range []*checkpoint{&st.Current, st.Previous} {
				if cp != nil {
					for _, s := range cp.Segments {
						named[s.Name] = true
					}
				}
			}
			for _, oi := range wd.objs {
				if !named[strings.TrimPrefix(oi.Key, dir)] && oi.LastModified.Before(cutoff) {
					drop = append(drop, oi.Key)
				}
			}
		default:
			// Segments of a write that never saved its state.
			for _, oi := range wd.objs {
				if oi.LastModified.Before(cutoff) {
					drop = append(drop, oi.Key)
				}
			}
		}
	}
	if err := d.removeKeys(ctx, drop); err != nil {
		return res, fmt.Errorf("%s: cleanup: %w", driverName, err)
	}
	res.Objects = len(drop)

	for u := range d.client.ListIncompleteUploads(ctx, d.cfg.Bucket, d.base, true) {
		if u.Err != nil {
			return res, fmt.Errorf("%s: cleanup: list multipart uploads: %w", driverName, u.Err)
		}
		if live[u.UploadID] || !u.Initiated.Before(cutoff) || strings.HasPrefix(u.Key, d.base+writesDir+"/") {
			continue
		}
		if err := d.core.AbortMultipartUpload(ctx, d.cfg.Bucket, u.Key, u.UploadID); err != nil && !isNotFound(err) {
			return res, fmt.Errorf("%s: cleanup: abort upload of %s: %w", driverName, u.Key, err)
		}
		res.Uploads++
	}
	return res, ctx.Err()
}

// Expire is Cleanup for the registry's background job (storage.Janitor).
func (d *Driver) Expire(ctx context.Context, olderThan time.Duration) (string, error) {
	res, err := d.Cleanup(ctx, olderThan)
	return fmt.Sprintf("%+v", res), err
}
