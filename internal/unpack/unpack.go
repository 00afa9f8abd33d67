// Package unpack installs archive layers (tar, tar+gzip, tar+zstd) safely:
// an archive is read once, as a stream, into a staging directory, hashed as
// it is read and checked against its layer digest (and its uncompressed
// digest when one is declared), under the same path rules as raw layers
// (manifests.ValidatePath, manifests.CheckPathSet) and within bounds on
// what it may unpack to. Nothing appears in the target until the caller
// commits the stage, after every layer verified; an archive that fails any
// check discards the whole stage and leaves the target as it was.
//
// Links (symbolic and hard) are refused, all of them, not only those that
// point outside: an installed model is a set of regular files, each
// re-hashed by `verify` against its receipt, and a link inside the target
// would make two paths one file (a later write through one changes the
// other), cannot be created on Windows without privilege, and is not what
// KitOps or modctl produce (both pack only regular files and directories).
// Device files, fifos and sparse files are refused too.
package unpack

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// ErrRefused is wrapped by every refusal of an archive's content (as
// opposed to an I/O failure), so that callers can tell a hostile or broken
// archive from a full disk with errors.Is. Refusals wrap manifests.ErrInvalid too.
var ErrRefused = errors.New("archive refused")

func refusef(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", manifests.ErrInvalid, ErrRefused, fmt.Sprintf(format, args...))
}

// Defaults of Limits.
const (
	// DefaultMaxRatio bounds unpacked bytes per archive byte. Model weights
	// compress to 90-95% of their size and text to 10-30%; a zip bomb
	// reaches 1000:1 with gzip and far more with zstd.
	DefaultMaxRatio = 100
	// RatioSlack is unpacked without regard to the ratio, so that small
	// archives of text (configs, tokenizers) that compress well pass.
	RatioSlack = 64 << 20
	// DefaultMaxEntries bounds the entries of one archive.
	DefaultMaxEntries = 100000
	// maxZstdWindow is the largest zstd window accepted: the zstd tool's
	// own default limit (--long=27), which bounds the decoder's memory.
	maxZstdWindow = 128 << 20
)

// Limits bound what one archive may unpack to; zero fields take defaults.
type Limits struct {
	// MaxBytes bounds the bytes of the files of all the archives unpacked
	// into one stage (e.g. the free space of the target's disk; pass the
	// same value for every layer, so that many small bombs cannot add up);
	// 0 means only the ratio bounds each archive.
	MaxBytes int64
	// MaxRatio bounds the uncompressed tar's size per byte of the layer,
	// beyond RatioSlack.
	MaxRatio int64
	// MaxEntries bounds the number of entries.
	MaxEntries int
}

// Layer is the archive to unpack, as its manifest declares it.
type Layer struct {
	// Name says which layer it is in errors ("layer 2 (…tar+gzip)").
	Name        string
	Digest      digest.Digest
	Size        int64
	Compression manifests.Compression
	// DiffID is the declared digest of the uncompressed tar, checked when set.
	DiffID digest.Digest
	// UnpackedSize, when >= 0, bounds the bytes of the archive's files.
	UnpackedSize int64
}

// LayerOf describes the archive layer of a classified manifest.
func LayerOf(p manifests.LayerPlan) Layer {
	return Layer{
		Name:         fmt.Sprintf("layer %d (%s)", p.Index, p.Descriptor.MediaType),
		Digest:       p.Descriptor.Digest,
		Size:         p.Descriptor.Size,
		Compression:  p.Compression,
		DiffID:       p.DiffID,
		UnpackedSize: p.UnpackedSize,
	}
}

// File is a regular file an archive unpacked.
type File struct {
	// Path is relative to the target, slash-separated.
	Path   string
	Size   int64
	Digest digest.Digest
	// Executable is set when the archive gave the file an execute bit.
	Executable bool
}

// bufSize is the buffer of small files' writes and of draining a stream.
const bufSize = 1 << 20

// Unpack reads one archive layer from r into the stage. r yields the
// layer's bytes as stored in the registry (compressed); it is read to its
// end, and its size and digest must match l before Unpack returns nil.
// Any error discards the stage: its files are removed and the stage can
// no longer be committed.
func (s *Stage) Unpack(ctx context.Context, r io.Reader, l Layer, lim Limits) (files []File, err error) {
	if s.done {
		return nil, fmt.Errorf("unpack %s: the stage was already committed or discarded", l.Name)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("unpack %s: %w", l.Name, err)
			if derr := s.Discard(); derr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
			}
		}
	}()
	if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("layer digest %q: only valid sha256 digests are supported", l.Digest)
	}
	if l.DiffID != "" {
		if err := l.DiffID.Validate(); err != nil || l.DiffID.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("declared uncompressed digest %q: only valid sha256 digests are supported", l.DiffID)
		}
	}
	if l.Size < 0 {
		return nil, fmt.Errorf("negative layer size %d", l.Size)
	}
	u := &unpacker{stage: s, ctx: ctx, layer: l, lim: lim, buf: make([]byte, bufSize)}
	u.setBounds()

	// The layer as stored: bounded to its declared size (one byte more
	// reveals a longer blob) and hashed as it is read, ahead of the rest.
	u.blob = newReadAhead(io.LimitReader(r, l.Size+1), l.Size)
	defer u.blob.close()
	br := bufio.NewReaderSize(u.blob, 64<<10)

	var tarStream io.Reader
	switch l.Compression {
	case manifests.CompressionNone:
		tarStream = br
	case manifests.CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, u.streamErr("not a gzip stream", err)
		}
		defer zr.Close()
		tarStream = zr
	case manifests.CompressionZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, fmt.Errorf("start zstd: %w", err)
		}
		defer zr.Close()
		tarStream = zr
	default:
		return nil, fmt.Errorf("compression %q is not supported", l.Compression)
	}
	// The uncompressed tar: counted against the ratio guard and hashed
	// when its digest is declared.
	u.tarStream = &boundedReader{r: tarStream, limit: u.streamLimit, what: "the uncompressed archive"}
	var tarReader io.Reader = u.tarStream
	if l.DiffID != "" && l.Compression != manifests.CompressionNone {
		u.diff = &hashingReader{r: tarReader, h: sha256.New()}
		tarReader = u.diff
	}
	if err := u.extract(tar.NewReader(tarReader)); err != nil {
		return nil, err
	}
	if err := u.finish(); err != nil {
		return nil, err
	}
	if err := syncFiles(u.unsynced); err != nil {
		return nil, err
	}
	s.files = append(s.files, u.files...)
	s.unpacked += u.fileBytes
	return u.files, nil
}

type unpacker struct {
	stage     *Stage
	ctx       context.Context
	layer     Layer
	lim       Limits
	buf       []byte
	wp        *writePipeline
	blob      *readAhead
	tarStream *boundedReader
	diff      *hashingReader
	files     []File
	// fileLimit bounds the bytes of all files; streamLimit the uncompressed tar.
	fileLimit, streamLimit int64
	fileBytes              int64
	entries                int
	// entryEnd is where the last entry ended in the uncompressed tar.
	entryEnd int64
	// unsynced are the small files written but not yet synced.
	unsynced []string
}

func (u *unpacker) setBounds() {
	ratio := u.lim.MaxRatio
	if ratio <= 0 {
		ratio = DefaultMaxRatio
	}
	switch {
	case u.layer.Compression == manifests.CompressionNone:
		u.streamLimit = u.layer.Size // the tar is the layer
	case u.layer.Size > (1<<63-1)/ratio:
		u.streamLimit = 1<<63 - 1
	default:
		u.streamLimit = max(RatioSlack, ratio*u.layer.Size)
	}
	u.fileLimit = u.streamLimit
	if u.lim.MaxBytes > 0 {
		u.fileLimit = min(u.fileLimit, max(u.lim.MaxBytes-u.stage.unpacked, 0))
	}
	if u.layer.UnpackedSize >= 0 {
		u.fileLimit = min(u.fileLimit, u.layer.UnpackedSize)
	}
}

func (u *unpacker) extract(tr *tar.Reader) error {
	maxEntries := u.lim.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			// archive/tar also ends quietly at a missing marker or padding;
			// an archive cut short must not install its first part.
			if end := (u.entryEnd+511)&^511 + 1024; u.tarStream.n != end {
				return refusef("the archive is truncated: it does not end with the end-of-archive marker")
			}
			return nil
		}
		if err != nil {
			return u.streamErr("read archive", err)
		}
		u.entries++
		if u.entries > maxEntries {
			return refusef("more than %d entries", maxEntries)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			u.entryEnd = u.tarStream.n
			continue // PAX defaults for later entries (git archive writes one); nothing to install
		}
		name, err := entryPath(hdr)
		if err != nil {
			return err
		}
		if name == "" {
			u.entryEnd = u.tarStream.n
			continue // the archive's root directory, "./"
		}
		if err := u.entry(tr, hdr, name); err != nil {
			return err
		}
		u.entryEnd = u.tarStream.n
	}
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header, name string) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.stage.claim(name, true); err != nil {
			return err
		}
		return u.stage.mkdirs(name)
	case tar.TypeReg, tar.TypeRegA:
		return u.file(tr, hdr, name)
	case tar.TypeSymlink:
		return refusef("entry %q is a symbolic link (to %q): links are refused in model archives", name, hdr.Linkname)
	case tar.TypeLink:
		return refusef("entry %q is a hard link (to %q): links are refused in model archives", name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return refusef("entry %q is a device file", name)
	case tar.TypeFifo:
		return refusef("entry %q is a fifo", name)
	case tar.TypeGNUSparse:
		return refusef("entry %q is a sparse file, which is not supported", name)
	default:
		return refusef("entry %q has type %q, which is not a regular file or directory", name, hdr.Typeflag)
	}
}

// entryPath is the entry's path relative to the target: "./" prefixes and
// a directory's trailing slash dropped, then the rules of raw layers.
func entryPath(hdr *tar.Header) (string, error) {
	name := hdr.Name
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if name == "" || name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return "", nil
		}
		return "", refusef("entry %q has no name", hdr.Name)
	}
	if err := manifests.ValidatePath(name); err != nil {
		return "", refusef("entry %q: %v", hdr.Name, err)
	}
	return name, nil
}

func (u *unpacker) file(tr *tar.Reader, hdr *tar.Header, name string) error {
	if hdr.Size < 0 {
		return refusef("entry %q has negative size %d", name, hdr.Size)
	}
	if hdr.Size > u.fileLimit-u.fileBytes {
		return refusef("entry %q (%d bytes) takes the archive's files over their bound of %d bytes (%s)", name, hdr.Size, u.fileLimit, u.boundReason())
	}
	if err := u.stage.claim(name, false); err != nil {
		return err
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		if err := u.stage.mkdirs(name[:i]); err != nil {
			return err
		}
	}
	dest := filepath.Join(u.stage.dir, filepath.FromSlash(name))
	perm := os.FileMode(0o644)
	exec := hdr.Mode&0o111 != 0
	if exec {
		perm = 0o755
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	h := sha256.New()
	var n int64
	if hdr.Size >= pipelinedFiles {
		if u.wp == nil {
			u.wp = newWritePipeline() // only layers with large files need its buffers
		}
		n, err = u.wp.copyFile(f, h, tr, hdr.Size, u.ctx.Err)
		if err == nil {
			if serr := f.Sync(); serr != nil {
				err = &writeError{serr}
			}
		}
	} else {
		// Small files are synced together at the end (syncSmall).
		n, err = u.copyFile(f, io.TeeReader(tr, h), hdr.Size)
		u.unsynced = append(u.unsynced, dest)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &writeError{cerr}
	}
	if err != nil {
		return u.streamErr("write "+name, err)
	}
	u.fileBytes += n
	u.files = append(u.files, File{Path: name, Size: n, Digest: digest.NewDigest(digest.SHA256, h), Executable: exec})
	return nil
}

// copyFile writes exactly size bytes of r to f (a small file).
func (u *unpacker) copyFile(f *os.File, r io.Reader, size int64) (int64, error) {
	var written int64
	for written < size {
		n, err := io.ReadFull(r, u.buf[:min(int64(len(u.buf)), size-written)])
		if n > 0 {
			if _, werr := f.Write(u.buf[:n]); werr != nil {
				return written, &writeError{werr}
			}
			written += int64(n)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, err
		}
	}
	return written, nil
}

func (u *unpacker) boundReason() string {
	switch {
	case u.layer.UnpackedSize >= 0 && u.fileLimit == u.layer.UnpackedSize:
		return "the size the manifest declares"
	case u.lim.MaxBytes > 0 && u.fileLimit == max(u.lim.MaxBytes-u.stage.unpacked, 0):
		return fmt.Sprintf("the limit given, %d bytes for all archives, %d of them unpacked before", u.lim.MaxBytes, u.stage.unpacked)
	case u.layer.Compression == manifests.CompressionNone:
		return "the layer's own size"
	}
	return "the ratio guard"
}

// streamErr turns a failure to read the archive into a refusal when the
// archive is at fault (truncated, corrupt, too large), and keeps it an I/O
// error when reading the layer or writing a file failed.
func (u *unpacker) streamErr(what string, err error) error {
	var be *boundError
	var we *writeError
	switch {
	case errors.As(err, &be):
		return refusef("%s: %v (%s)", what, err, u.boundReason())
	case errors.Is(err, ErrRefused), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &we), u.blob.err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case u.blob.n > u.layer.Size:
		return refusef("%s: the layer is longer than the %d bytes its descriptor declares", what, u.layer.Size)
	case u.blob.eof && u.blob.n < u.layer.Size:
		return refusef("%s: the layer ends after %d of the %d bytes its descriptor declares", what, u.blob.n, u.layer.Size)
	}
	// Neither the source nor the disk failed: the decompressor or the tar
	// reader found the archive corrupt or truncated.
	return refusef("%s: %v", what, err)
}

// syncers is how many small files are synced at once: concurrent fsyncs
// share the filesystem's journal commits, where one after another each
// waits for its own (a code or dataset layer of a thousand files).
const syncers = 16

// syncFiles makes the files durable, several at a time.
func syncFiles(paths []string) error { return parallel(paths, syncFile) }

// parallel calls fn for every item, syncers at a time, and returns the
// first error.
func parallel(items []string, fn func(string) error) error {
	if len(items) == 0 {
		return nil
	}
	work := make(chan string)
	errs := make(chan error, syncers)
	workers := min(syncers, len(items))
	for range workers {
		go func() {
			var first error
			for it := range work {
				if first == nil {
					first = fn(it)
				}
			}
			errs <- first
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	var err error
	for range workers {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return err
}

// syncFile opens a written file again to sync it (for writing: Windows
// flushes only through a handle that may write).
func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(p), err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(p), err)
	}
	return nil
}

// writeError marks a failure to write a file, which is never the archive's fault.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// finish reads what follows the tar's end-of-archive marker (padding, the
// compressor's trailer) and the rest of the blob, and checks the digests.
func (u *unpacker) finish() error {
	if _, err := io.CopyBuffer(io.Discard, u.diffOrTar(), u.buf); err != nil {
		return u.streamErr("read the end of the archive", err)
	}
	if _, err := io.CopyBuffer(io.Discard, u.blob, u.buf); err != nil {
		return u.streamErr("read the end of the layer", err)
	}
	switch {
	case u.blob.n > u.layer.Size:
		return refusef("the layer is longer than the %d bytes its descriptor declares", u.layer.Size)
	case u.blob.n < u.layer.Size:
		return refusef("the layer ends after %d of the %d bytes its descriptor declares", u.blob.n, u.layer.Size)
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, u.blob.sum()); got != u.layer.Digest {
		return refusef("digest mismatch: got %s, want %s", got, u.layer.Digest)
	}
	if u.diff != nil {
		if got := digest.NewDigest(digest.SHA256, u.diff.h); got != u.layer.DiffID {
			return refusef("uncompressed digest mismatch: got %s, want the declared %s", got, u.layer.DiffID)
		}
	}
	return nil
}

func (u *unpacker) diffOrTar() io.Reader {
	if u.diff != nil {
		return u.diff
	}
	return u.tarStream
}

// hashingReader hashes and counts what is read through it, and remembers
// how reading ended.
type hashingReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	eof bool
	err error
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	switch {
	case err == io.EOF:
		hr.eof = true
	case err != nil:
		hr.err = err
	}
	return n, err
}

// boundedReader fails once more than limit bytes come through it.
type boundedReader struct {
	r     io.Reader
	n     int64
	limit int64
	what  string
}

type boundError struct {
	what  string
	limit int64
}

func (e *boundError) Error() string {
	return fmt.Sprintf("%s is larger than its bound of %d bytes", e.what, e.limit)
}

func (br *boundedReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	br.n += int64(n)
	if br.n > br.limit {
		return n, &boundError{what: br.what, limit: br.limit}
	}
	return n, err
}

// pathKind is what a claimed path is.
type pathKind bool

const (
	kindFile pathKind = false
	kindDir  pathKind = true
)

// claim records path as a file or a directory of the stage, refusing what
// CheckPathSet refuses for raw layers: one path twice (also as a case
// variant, since the target may be case-insensitive), and a file that is
// also a directory. A directory may be named again (tar writes each once,
// but tools that append do not), a file may not.
func (s *Stage) claim(p string, dir bool) error {
	k := foldPath(p)
	if prev, ok := s.claims[k]; ok {
		switch {
		case prev.kind == kindDir && dir:
			return nil
		case prev.kind == kindDir:
			return refusef("entry %q is a file, but %q is a directory", p, prev.path)
		case dir:
			return refusef("entry %q is a directory, but %q is a file", p, prev.path)
		default:
			return refusef("entries %q and %q are the same file", prev.path, p)
		}
	}
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		dk := foldPath(d)
		prev, ok := s.claims[dk]
		if ok && prev.kind == kindFile {
			return refusef("entry %q is inside %q, which is a file", p, prev.path)
		}
		if !ok {
			s.claims[dk] = claimed{path: d, kind: kindDir}
		}
	}
	s.claims[k] = claimed{path: p, kind: pathKind(dir)}
	return nil
}

type claimed struct {
	path string
	kind pathKind
}

// foldPath is the key under which case-insensitive filesystems see a path
// (as manifests.CheckPathSet folds).
func foldPath(p string) string { return strings.ToLower(strings.ToUpper(p)) }
