// Package storage is the registry's storage layer: a narrow Driver interface
// that the filesystem and S3 drivers implement, and the one layout of blobs,
// manifests, tags, tag history, referrers and upload sessions built on it
// (Store). The client uses the same layout to push straight to a bucket.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Driver stores objects under slash-separated relative paths. Paths reaching
// a driver are already validated by the layout (see cleanPath); drivers check
// again and refuse anything absolute or containing "..".
//
// Every method honours ctx: a cancelled context stops the work and leaves no
// partial object visible.
type Driver interface {
	// Name is the driver's name for logs and errors ("filesystem", "s3").
	Name() string

	// GetContent returns the content of a small object (at most maxSize bytes;
	// a larger object is an error, so an untrusted size never sizes a buffer).
	GetContent(ctx context.Context, path string, maxSize int64) ([]byte, error)

	// PutContent atomically replaces the object at path with data.
	PutContent(ctx context.Context, path string, data []byte) error

	// PutContentIf atomically replaces the object at path only if its current
	// version is ifVersion, or, when ifVersion is "", only if it does not exist.
	// It returns ErrPreconditionFailed otherwise.
	PutContentIf(ctx context.Context, path string, data []byte, ifVersion string) error

	// Reader opens the object at path for reading from offset. Reading at or
	// past the end yields no bytes, not an error; a negative offset is an
	// *InvalidOffsetError. The filesystem driver returns an *os.File so that
	// HTTP responses can use sendfile.
	Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error)

	// Stat describes the object at path, or the "directory" prefix path/.
	Stat(ctx context.Context, path string) (FileInfo, error)

	// List returns the sorted names (not paths) of the direct children of the
	// directory path: objects and sub-directories alike. Names starting with
	// "." are the drivers' own (temporary files, write state) and never listed;
	// the layout never creates such names. The root is listed with path "".
	List(ctx context.Context, path string) ([]string, error)

	// Move moves the object at src to dst, replacing dst.
	Move(ctx context.Context, src, dst string) error

	// Delete removes the object at path, or every object below path/.
	Delete(ctx context.Context, path string) error

	// Writer starts (offset 0) or resumes (offset > 0) a resumable write of
	// the object at path. Nothing is visible at path until Commit. Starting
	// at offset 0 discards any earlier unfinished write at path. Resuming
	// discards any bytes past offset; if fewer than offset bytes were made
	// durable by an earlier Close, it fails with an *InvalidOffsetError.
	Writer(ctx context.Context, path string, offset int64) (FileWriter, error)
}

// FileWriter is a resumable write in progress.
type FileWriter interface {
	io.Writer
	// Size is the number of bytes of the object so far, resumed and written.
	Size() int64
	// Close makes everything written durable, so that Writer(path, Size())
	// continues it, from this or another process, also after a crash.
	Close() error
	// Cancel discards the write and everything it stored.
	Cancel(ctx context.Context) error
	// Commit makes the object visible at its path, complete, atomically.
	Commit(ctx context.Context) error
}

// StreamPutter is implemented by drivers that store a stream in one pass
// more cheaply than a resumable write followed by a Move (S3, where a Move is
// a copy of every byte). The object appears at path, atomically, only when r
// ends with io.EOF; any other error from r, or a cancelled ctx, leaves
// nothing (and an object already there untouched). It keeps no resumable
// state, so two PutStreams of one path do not interfere and neither disturbs
// a Writer there. It returns the number of bytes stored.
type StreamPutter interface {
	PutStream(ctx context.Context, path string, r io.Reader) (int64, error)
}

// Redirector is implemented by drivers that can hand a client a direct,
// time-limited URL for an object (S3 presigned GETs).
type Redirector interface {
	RedirectURL(ctx context.Context, path string, expiry time.Duration) (string, error)
}

// ValidPath reports whether p is a path every driver accepts: clean,
// relative, slash-separated, no component starting with "." (so no ".",
// ".." and no hidden names: a driver keeps its partial writes under such
// names), no backslashes or NULs. Drivers refuse anything else with an
// *InvalidPathError.
func ValidPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") || path.Clean(p) != p {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if strings.HasPrefix(seg, ".") {
			return false
		}
	}
	return true
}

// Walker is implemented by drivers that list every object below a
// directory in few requests, each with its Version (S3: one recursive
// listing per 1,000 objects, where List and a Stat per object would cost a
// request each). Paths are driver paths; hidden names are left out.
type Walker interface {
	Walk(ctx context.Context, dir string) ([]FileInfo, error)
}

// Janitor is implemented by drivers that keep state of their own for
// writes in progress and so leave some behind when a process dies mid-write
// (S3: multipart uploads and write state). The registry calls Expire
// periodically with the age it expires upload sessions at; it reports what
// it removed, for the log.
type Janitor interface {
	Expire(ctx context.Context, olderThan time.Duration) (string, error)
}

// ConditionalWriter is implemented by drivers whose PutContentIf can be
// racy: an S3 store that ignores conditional headers, where it compares
// and then writes. The Store then keeps no tag index (tagindex.go), whose
// updates by writers of different tags would race; views list the links.
type ConditionalWriter interface {
	ConditionalWrites() bool
}

// FileInfo describes an object or a directory prefix.
type FileInfo struct {
	Path    string
	Size    int64
	ModTime time.Time
	IsDir   bool
	// Version identifies this content of the object for PutContentIf
	// (an ETag on S3); opaque to callers.
	Version string
}

// ErrPreconditionFailed is returned by PutContentIf when the object changed.
var ErrPreconditionFailed = errors.New("storage: precondition failed: the object was changed by another writer")

// PathNotFoundError is returned when an object or directory does not exist.
type PathNotFoundError struct {
	Driver string
	Path   string
}

func (e *PathNotFoundError) Error() string {
	return fmt.Sprintf("%s: path not found: %s", e.Driver, e.Path)
}

// InvalidPathError is returned for a path a driver refuses to touch.
type InvalidPathError struct {
	Driver string
	Path   string
}

func (e *InvalidPathError) Error() string {
	return fmt.Sprintf("%s: invalid path: %q", e.Driver, e.Path)
}

// InvalidOffsetError is returned when a write cannot resume at Offset.
type InvalidOffsetError struct {
	Driver string
	Path   string
	Offset int64
	Have   int64
}

func (e *InvalidOffsetError) Error() string {
	return fmt.Sprintf("%s: cannot resume %s at offset %d: %d bytes are durable", e.Driver, e.Path, e.Offset, e.Have)
}

// TooLargeError is returned by GetContent for an object over its limit.
type TooLargeError struct {
	Path  string
	Size  int64
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("storage: %s is %d bytes, over the %d-byte limit", e.Path, e.Size, e.Limit)
}

// IsNotFound reports whether err is, or wraps, a *PathNotFoundError.
func IsNotFound(err error) bool {
	var nf *PathNotFoundError
	return errors.As(err, &nf)
}
