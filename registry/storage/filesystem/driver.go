// Package filesystem is the storage driver for a local directory. Every write
// goes to a hidden temporary name, is fsynced, and is renamed into place, and
// the directory is fsynced: a crash never leaves a half-written object
// visible.
package filesystem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry/storage"
)

const driverName = "filesystem"

// Driver stores objects as files below Root.
type Driver struct {
	root string
	opts Options
}

// Options configure a Driver.
type Options struct {
	// DirectIO writes blob data with O_DIRECT, around the page cache, where
	// the filesystem takes it; false keeps every write in the page cache
	// (filesystems that misbehave with O_DIRECT, or tests of that path).
	DirectIO bool
}

var _ storage.Driver = (*Driver)(nil)

// New returns a driver rooted at root, creating the directory if needed,
// with direct I/O where the platform supports it.
func New(root string) (*Driver, error) {
	return Open(root, Options{DirectIO: directio.Supported})
}

// Open returns a driver rooted at root with opts, creating the directory
// if needed.
func Open(root string, opts Options) (*Driver, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("filesystem storage %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("filesystem storage: create %s: %w", abs, err)
	}
	return &Driver{root: abs, opts: opts}, nil
}

// Name implements storage.Driver.
func (d *Driver) Name() string { return driverName }

// Root is the directory the driver stores objects in.
func (d *Driver) Root() string { return d.root }

// fullPath validates a driver path and maps it below the root. The empty
// path is the root itself, allowed only where dirOK.
func (d *Driver) fullPath(p string, dirOK bool) (string, error) {
	if p == "" && dirOK {
		return d.root, nil
	}
	if !storage.ValidPath(p) {
		return "", &storage.InvalidPathError{Driver: driverName, Path: p}
	}
	return filepath.Join(d.root, filepath.FromSlash(p)), nil
}

func (d *Driver) notFound(p string) error {
	return &storage.PathNotFoundError{Driver: driverName, Path: p}
}

func (d *Driver) mapErr(p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return d.notFound(p)
	}
	return fmt.Errorf("%s: %s: %w", driverName, p, err)
}

// GetContent implements storage.Driver.
func (d *Driver) GetContent(ctx context.Context, p string, maxSize int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	full, err := d.fullPath(p, false)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(full)
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	if fi.IsDir() {
		return nil, d.notFound(p)
	}
	if fi.Size() > maxSize {
		return nil, &storage.TooLargeError{Path: p, Size: fi.Size(), Limit: maxSize}
	}
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, d.mapErr(p, err)
	}
	return buf, nil
}

// PutContent implements storage.Driver.
func (d *Driver) PutContent(ctx context.Context, p string, data []byte) error {
	full, err := d.fullPath(p, false)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return writeAtomic(full, data)
}

// PutContentIf implements storage.Driver. Writers on this host serialize on an
// exclusive flock of a hidden lock file beside the object, so the check and
// the rename are one step for every process sharing the directory.
func (d *Driver) PutContentIf(ctx context.Context, p string, data []byte, ifVersion string) error {
	full, err := d.fullPath(p, false)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return d.mapErr(p, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "."+filepath.Base(full)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return d.mapErr(p, err)
	}
	defer lock.Close()
	if err := atomicfile.Lock(lock); err != nil {
		return fmt.Errorf("%s: lock %s: %w", driverName, p, err)
	}
	defer atomicfile.Unlock(lock) //nolint:errcheck // released on close anyway
	fi, err := os.Stat(full)
	switch {
	case err == nil && ifVersion == "":
		return storage.ErrPreconditionFailed
	case err == nil && version(fi) != ifVersion:
		return storage.ErrPreconditionFailed
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return d.mapErr(p, err)
	case err != nil && ifVersion != "":
		return storage.ErrPreconditionFailed
	}
	return writeAtomic(full, data)
}

// version identifies one content of a file: every write renames a new inode
// into place, so inode, size and mtime together change on each write.
func version(fi fs.FileInfo) string {
	return fmt.Sprintf("%x-%x-%x", inode(fi), fi.Size(), fi.ModTime().UnixNano())
}

// Reader implements storage.Driver; it returns the *os.File itself so that
// net/http can send it with sendfile.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	full, err := d.fullPath(p, false)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset}
	}
	f, err := os.Open(full)
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		if err == nil {
			return nil, d.notFound(p)
		}
		return nil, d.mapErr(p, err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, d.mapErr(p, err)
		}
	}
	return f, nil
}

// Stat implements storage.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	full, err := d.fullPath(p, true)
	if err != nil {
		return storage.FileInfo{}, err
	}
	fi, err := os.Stat(full)
	if err != nil {
		return storage.FileInfo{}, d.mapErr(p, err)
	}
	info := storage.FileInfo{Path: p, ModTime: fi.ModTime(), IsDir: fi.IsDir()}
	if !fi.IsDir() {
		info.Size = fi.Size()
		info.Version = version(fi)
	}
	return info, nil
}

// List implements storage.Driver.
func (d *Driver) List(ctx context.Context, p string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	full, err := d.fullPath(p, true)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(full)
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Move implements storage.Driver.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fsrc, err := d.fullPath(src, false)
	if err != nil {
		return err
	}
	fdst, err := d.fullPath(dst, false)
	if err != nil {
		return err
	}
	if _, err := os.Stat(fsrc); err != nil {
		return d.mapErr(src, err)
	}
	if err := os.MkdirAll(filepath.Dir(fdst), 0o755); err != nil {
		return d.mapErr(dst, err)
	}
	if err := atomicfile.Rename(fsrc, fdst); err != nil {
		return d.mapErr(src, err)
	}
	return syncDir(filepath.Dir(fdst))
}

// Delete implements storage.Driver.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	full, err := d.fullPath(p, false)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(full); err != nil {
		return d.mapErr(p, err)
	}
	if err := os.RemoveAll(full); err != nil {
		return d.mapErr(p, err)
	}
	return syncDir(filepath.Dir(full))
}

// writeAtomic writes data to a temporary name beside full, fsyncs it and
// renames it into place.
func writeAtomic(full string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(full, data, 0o644, true)
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
