package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/modelctl/modelctl/registry/storage"
)

// Writer implements storage.Driver. The bytes go to a hidden partial file
// beside path, named after it, so any process can resume the write; Commit
// renames it into place.
func (d *Driver) Writer(ctx context.Context, p string, offset int64) (storage.FileWriter, error) {
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
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return nil, d.mapErr(p, err)
	}
	partial := filepath.Join(filepath.Dir(full), "."+filepath.Base(full)+".partial")
	flags := os.O_WRONLY | os.O_CREATE
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(partial, flags, 0o644)
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	if offset > 0 {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, d.mapErr(p, err)
		}
		if fi.Size() < offset {
			f.Close()
			return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset, Have: fi.Size()}
		}
		// Bytes past offset were written but never acknowledged (the process
		// died between writing them and recording the new offset): drop them.
		if err := f.Truncate(offset); err != nil {
			f.Close()
			return nil, d.mapErr(p, err)
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, d.mapErr(p, err)
		}
	}
	return &fileWriter{d: d, path: p, full: full, partial: partial, f: f, size: offset}, nil
}

type fileWriter struct {
	d       *Driver
	path    string
	full    string
	partial string
	f       *os.File
	size    int64
	closed  bool
}

var errWriterClosed = errors.New("filesystem: writer already closed")

func (w *fileWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
	}
	return n, nil
}

// ReadFrom lets io.Copy hand the file to the kernel's copy paths
// (copy_file_range, splice) when the source allows it.
func (w *fileWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	n, err := w.f.ReadFrom(r)
	w.size += n
	return n, err
}

func (w *fileWriter) Size() int64 { return w.size }

func (w *fileWriter) Close() error {
	if w.closed {
		return errWriterClosed
	}
	w.closed = true
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("%s: sync %s: %w", driverName, w.path, err)
	}
	return w.f.Close()
}

func (w *fileWriter) Cancel(ctx context.Context) error {
	if !w.closed {
		w.closed = true
		w.f.Close()
	}
	if err := os.Remove(w.partial); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: cancel %s: %w", driverName, w.path, err)
	}
	return nil
}

func (w *fileWriter) Commit(ctx context.Context) error {
	if !w.closed {
		if err := w.Close(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(w.partial, w.full); err != nil {
		return w.d.mapErr(w.path, err)
	}
	return syncDir(filepath.Dir(w.full))
}
