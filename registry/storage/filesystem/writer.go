package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry/storage"
)

// Large writes bypass the page cache (O_DIRECT) where the filesystem allows:
// a registry receives multi-GB blobs that nobody reads back at once (see
// internal/directio for what it saves). The writer gathers bytes in an
// aligned buffer, writes whole buffers directly, and writes the unaligned
// tail through the page cache when it closes.
const (
	directAlign   = directio.Align
	directBufSize = 1 << 20
)

var directBuffers = sync.Pool{New: func() any {
	b := directio.Buffer(directBufSize)
	return &b
}}

// DirectIO can be turned off (tests of the buffered path, or filesystems
// that misbehave with O_DIRECT).
var DirectIO = directio.Supported

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
	w := &fileWriter{d: d, path: p, full: full, partial: partial, f: f, size: offset}
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
	if DirectIO {
		// Start the buffer at the block boundary below offset, holding the
		// bytes of the partial block, so every direct write is aligned.
		// They are read before O_DIRECT is on, which would refuse the read.
		w.buf = directBuffers.Get().(*[]byte)
		w.base = offset &^ (directAlign - 1)
		w.n = int(offset - w.base)
		if w.n > 0 {
			if _, err := f.ReadAt((*w.buf)[:w.n], w.base); err != nil {
				w.release()
				f.Close()
				return nil, d.mapErr(p, err)
			}
		}
		w.direct = directio.Set(f, true) == nil
		if !w.direct {
			w.release()
			w.base, w.n = 0, 0
		}
	}
	if !w.direct {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
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

	// Direct I/O state: buf holds the bytes of the file from base on.
	direct bool
	buf    *[]byte
	base   int64
	n      int
}

var errWriterClosed = errors.New("filesystem: writer already closed")

func (w *fileWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	if !w.direct {
		n, err := w.f.Write(b)
		w.size += int64(n)
		if err != nil {
			return n, fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
		}
		return n, nil
	}
	written := 0
	for len(b) > 0 {
		// An aligned caller buffer with nothing pending goes to the disk
		// as it is, without the copy (the store's 1 MiB copy buffers are).
		if w.n == 0 && len(b) >= directAlign && directio.Aligned(b) {
			k := len(b) &^ (directAlign - 1)
			if _, err := w.f.WriteAt(b[:k], w.base); err != nil {
				return written, fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
			}
			w.base += int64(k)
			w.size += int64(k)
			written += k
			b = b[k:]
			continue
		}
		c := copy((*w.buf)[w.n:], b)
		w.n += c
		b = b[c:]
		if w.n == directBufSize {
			if err := w.flushDirect(directBufSize); err != nil {
				return written, err
			}
		}
		written += c
		w.size += int64(c)
	}
	return written, nil
}

// flushDirect writes the first n (aligned) bytes of the buffer.
func (w *fileWriter) flushDirect(n int) error {
	if _, err := w.f.WriteAt((*w.buf)[:n], w.base); err != nil {
		return fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
	}
	w.base += int64(n)
	w.n = copy(*w.buf, (*w.buf)[n:w.n])
	return nil
}

// ReadFrom lets io.Copy hand the file to the kernel's copy paths
// (copy_file_range, splice) when the writer is buffered.
func (w *fileWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	if w.direct {
		return io.Copy(struct{ io.Writer }{w}, r)
	}
	n, err := w.f.ReadFrom(r)
	w.size += n
	return n, err
}

func (w *fileWriter) Size() int64 { return w.size }

func (w *fileWriter) release() {
	if w.buf != nil {
		directBuffers.Put(w.buf)
		w.buf = nil
	}
}

func (w *fileWriter) Close() error {
	if w.closed {
		return errWriterClosed
	}
	w.closed = true
	defer w.release()
	if w.direct {
		if aligned := w.n &^ (directAlign - 1); aligned > 0 {
			if err := w.flushDirect(aligned); err != nil {
				w.f.Close()
				return err
			}
		}
		if w.n > 0 {
			if err := directio.Set(w.f, false); err != nil {
				w.f.Close()
				return fmt.Errorf("%s: %s: leave direct I/O: %w", driverName, w.path, err)
			}
			if _, err := w.f.WriteAt((*w.buf)[:w.n], w.base); err != nil {
				w.f.Close()
				return fmt.Errorf("%s: write %s: %w", driverName, w.path, err)
			}
		}
	}
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
		w.release()
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
