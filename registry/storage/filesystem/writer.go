package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry/storage"
)

// Large writes bypass the page cache (O_DIRECT) where the filesystem allows:
// a registry receives multi-GB blobs that nobody reads back at once (see
// internal/directio for what it saves). The store hands the writer chunks
// that start on block boundaries in aligned memory (storage.copyHashed): a
// chunk of at least directMinWrite bytes at an aligned offset is written
// directly, its unaligned end and every smaller chunk through the page cache.
// The writer keeps no buffer of its own, so an upload that waits for bytes
// holds no memory here (a gathering buffer per open writer was 1 MiB per
// slow connection).
const (
	directAlign    = directio.Align
	directMinWrite = 1 << 20
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
	flags := os.O_RDWR | os.O_CREATE
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(partial, flags, 0o644)
	if err != nil {
		return nil, d.mapErr(p, err)
	}
	w := &fileWriter{d: d, path: p, full: full, partial: partial, f: f, size: offset, canDirect: d.opts.DirectIO}
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
	}
	return w, nil
}

type fileWriter struct {
	d       *Driver
	path    string
	full    string
	partial string
	f       *os.File
	size    int64
	closed  bool

	// canDirect: direct I/O is wanted and the filesystem has not refused
	// it; direct: the descriptor is in direct mode now.
	canDirect, direct bool
}

var errWriterClosed = errors.New("filesystem: writer already closed")

// Every write goes at w.size with WriteAt, so switching the descriptor
// between direct and buffered mode never depends on its file offset.
func (w *fileWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	written := 0
	for len(b) > 0 {
		k := len(b) &^ (directAlign - 1)
		direct := w.canDirect && k >= directMinWrite && w.size%directAlign == 0 && directio.Aligned(b)
		if err := w.setDirect(direct); err != nil {
			return written, err
		}
		if !w.direct {
			k = len(b)
		}
		n, err := w.f.WriteAt(b[:k], w.size)
		w.size += int64(n)
		written += n
		if err != nil {
			return written, fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
		}
		b = b[k:]
	}
	return written, nil
}

// setDirect switches the descriptor's mode. A filesystem that refuses
// direct I/O (tmpfs) is written buffered from then on.
func (w *fileWriter) setDirect(on bool) error {
	if on == w.direct {
		return nil
	}
	if err := directio.Set(w.f, on); err != nil {
		if on {
			w.canDirect = false
			return nil
		}
		return fmt.Errorf("%s: %s: leave direct I/O: %w", driverName, w.path, err)
	}
	w.direct = on
	return nil
}

// ReadFrom lets io.Copy hand the file to the kernel's copy paths
// (copy_file_range, splice), buffered.
func (w *fileWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	if err := w.setDirect(false); err != nil {
		return 0, err
	}
	if _, err := w.f.Seek(w.size, io.SeekStart); err != nil {
		return 0, fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
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
	if err := atomicfile.Rename(w.partial, w.full); err != nil {
		return w.d.mapErr(w.path, err)
	}
	return syncDir(filepath.Dir(w.full))
}
