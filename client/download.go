package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/internal/diskspace"
	"github.com/modelctl/modelctl/internal/humanize"
	"github.com/modelctl/modelctl/manifests"
)

// A blob is fetched as pieces of pieceSize, handed out in order to Parallel
// workers, each piece one Range request into a buffer of its own. The hash,
// which must see the bytes in order, follows those buffers as their bytes
// arrive, while a writer per worker puts them in the partial file around
// the page cache (internal/directio): no byte is read back from the file,
// and no dirty page cache is left to write back (on the VMs measured, that
// writeback cost more CPU than the hash). At most window pieces are held
// ahead of the hash (and the writes), which bounds the memory of a pull:
// maxWindow pieces per blob (128 MiB).
//
// Measured on loopback, 2 GiB, 2 cores (median of 5): 8 MiB pieces written
// in 1 MiB units 1.97 s, 16/4 MiB 1.71 s, 32/4 MiB 1.60 s: fewer range
// requests and fewer, larger direct writes.
const pieceSize = 32 << 20

// maxWindow caps the pieces held at once, whatever Parallel says.
const maxWindow = 4

// writeUnit is how much of a piece a worker receives before writing it: the
// progress recorded for a resumed pull moves in these steps.
const writeUnit = 4 << 20

type downloadState struct {
	Size     int64     `json:"size"`
	Segments []segment `json:"segments"`
}

type segment struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"` // exclusive
	Done  int64 `json:"done"`
}

// valid reports whether a state read back from disk describes contiguous
// ranges covering [0, size) with progress inside each.
func (st *downloadState) valid(size int64) bool {
	// Pieces were smaller in earlier versions; any plan of pieces up to
	// pieceSize resumes.
	if st.Size != size || len(st.Segments) == 0 || int64(len(st.Segments)) > size/(1<<20)+1 {
		return false
	}
	var next int64
	for _, s := range st.Segments {
		if s.Start != next || s.End < s.Start || s.End-s.Start > pieceSize || s.Done < 0 || s.Done > s.End-s.Start {
			return false
		}
		next = s.End
	}
	return next == size
}

// maxBlobUnknownDisk bounds a layer where the free disk space cannot be
// asked for: 16 TiB, half a million pieces.
const maxBlobUnknownDisk = 16 << 40

// checkRoom refuses a layer larger than what the cache's filesystem can
// still take, counting what the partial file already holds.
func checkRoom(partial string, file *os.File, f manifests.File) error {
	var have int64
	if fi, err := file.Stat(); err == nil {
		have = min(fi.Size(), f.Size)
	}
	need := f.Size - have
	free, err := diskspace.Free(filepath.Dir(partial))
	switch {
	case err != nil && f.Size > maxBlobUnknownDisk:
		return fmt.Errorf("layer %s declares %s, over the %s this client accepts where it cannot ask for the free space (%v)",
			f.Path, humanize.Bytes(f.Size), humanize.Bytes(maxBlobUnknownDisk), err)
	case err == nil && need > free:
		return fmt.Errorf("%w: no space left on device for layer %s: it declares %s, %s more than the %s free in the cache at %s (free space or set --cache-dir elsewhere)",
			ErrDiskFull, f.Path, humanize.Bytes(f.Size), humanize.Bytes(need-free), humanize.Bytes(free), filepath.Dir(filepath.Dir(partial)))
	}
	return nil
}

func planSegments(size int64) []segment {
	var segs []segment
	for start := int64(0); start < size || len(segs) == 0; start += pieceSize {
		segs = append(segs, segment{Start: start, End: min(start+pieceSize, size)})
	}
	return segs
}

// fetchBlob brings a layer into the cache: several ranges in parallel for a
// large blob, each continuing a previous interrupted run, hashed in order as
// the pieces arrive. The blob enters the cache only verified. It returns the
// bytes transferred.
func (c *Client) fetchBlob(ctx context.Context, src backend, f manifests.File, workers int, prog *fileProgress) (int64, error) {
	cache := c.cache
	if cache.HasBlob(f.Digest, f.Size) {
		prog.done()
		return 0, nil
	}
	partial := filepath.Join(cache.dir, "partial", f.Digest.Encoded())
	statePath := partial + ".json"
	lock, err := lockPartial(partial)
	if err != nil {
		return 0, err
	}
	defer lock.Close() // releases the lock
	// Another process may have finished this blob while we waited.
	if cache.HasBlob(f.Digest, f.Size) {
		prog.done()
		return 0, nil
	}
	file, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", partial, Explain(err, ""))
	}
	defer file.Close()
	// The size comes from the manifest, which nobody has verified yet: it
	// must fit on the disk before anything is planned for it (a manifest
	// declaring a 1 PiB layer would otherwise plan 33 million pieces).
	if err := checkRoom(partial, file, f); err != nil {
		return 0, err
	}
	var st downloadState
	if cache.readJSON(statePath, &st) != nil || !st.valid(f.Size) {
		st = downloadState{Size: f.Size, Segments: planSegments(f.Size)}
		if err := file.Truncate(0); err != nil {
			return 0, fmt.Errorf("truncate %s: %w", partial, err)
		}
		if err := cache.writeJSON(statePath, &st); err != nil {
			return 0, err
		}
	}

	dl := &download{c: c, src: src, f: f, file: file, st: &st, statePath: statePath, prog: prog}
	dl.openDirect(partial)
	defer dl.closeDirect()
	// The range bounds never change; the goroutines read this copy while
	// saveState rewrites st under its lock.
	dl.bounds = append([]segment(nil), st.Segments...)
	done := int64(0)
	for i, s := range st.Segments {
		d := s.Done
		if d < s.End-s.Start {
			// A piece continues at a block boundary (a state written by an
			// older modelctl may stop anywhere): refetch the odd bytes.
			d &^= directio.Align - 1
		}
		dl.done = append(dl.done, &atomic.Int64{})
		dl.done[i].Store(d)
		done += d
	}
	prog.set(done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers = max(1, min(workers, len(dl.bounds)))
	window := min(workers+1, maxWindow)
	for _, s := range dl.bounds {
		dl.bufSize = max(dl.bufSize, int(directio.RoundUp(s.End-s.Start)))
	}
	dl.free = make(chan []byte, window)
	dl.tokens = make(chan struct{}, window)
	dl.ready = make([]chan *piece, len(dl.bounds))
	for i := range dl.ready {
		dl.ready[i] = make(chan *piece, 1)
	}
	// Each worker and its writer, and the hash, report at most one error.
	errs := make(chan error, 2*workers+1)
	fail := func(err error) {
		errs <- err
		cancel()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		writes := make(chan unitWrite, 4)
		wg.Add(2)
		go func() {
			defer wg.Done()
			dl.writer(ctx, writes, fail)
		}()
		go func() {
			defer wg.Done()
			defer close(writes)
			for {
				// A token per piece held ahead of the hash (or of its
				// writes); taking it before the index keeps the pieces in
				// flight the next ones the hash needs.
				select {
				case dl.tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
				i := int(next.Add(1) - 1)
				if i >= len(dl.bounds) {
					return
				}
				if err := dl.segment(ctx, i, writes); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	got, herr := dl.hash(ctx)
	if herr != nil {
		fail(herr)
	}
	wg.Wait()
	dl.saveState()
	close(errs)
	if err := firstError(errs); err != nil {
		return dl.transferred.Load(), err
	}
	if got != f.Digest {
		file.Close()
		os.Remove(partial)
		os.Remove(statePath)
		return dl.transferred.Load(), &DigestError{What: "layer " + f.Path, Got: got.String(), Want: f.Digest.String()}
	}
	// The last block of a direct write was padded to the block size.
	if err := file.Truncate(f.Size); err != nil {
		return dl.transferred.Load(), fmt.Errorf("truncate %s: %w", partial, Explain(err, ""))
	}
	if err := file.Sync(); err != nil {
		return dl.transferred.Load(), fmt.Errorf("sync %s: %w", partial, Explain(err, ""))
	}
	// Both descriptors closed before the rename: Windows refuses to rename
	// an open file. The lock, on its own file, is still held.
	dl.closeDirect()
	if err := file.Close(); err != nil {
		return dl.transferred.Load(), fmt.Errorf("write %s: %w", partial, Explain(err, ""))
	}
	if err := cache.addBlob(f.Digest, partial); err != nil {
		return dl.transferred.Load(), err
	}
	os.Remove(statePath)
	// A process waiting for the lock finds the blob in the cache once it has
	// the lock, whether or not the lock file is still there.
	os.Remove(partial + lockSuffix)
	prog.done()
	return dl.transferred.Load(), nil
}

// lockSuffix names the lock file of a partial download, beside it.
const lockSuffix = ".lock"

// lockPartial takes the lock of a partial download, waiting for it, so two
// pulls of one blob, in two processes, take turns instead of writing one
// file at once. The lock is on a file of its own, not on the partial: the
// partial is renamed into the cache when complete, and Windows renames
// only closed files.
func lockPartial(partial string) (*os.File, error) {
	name := partial + lockSuffix
	lock, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, Explain(err, ""))
	}
	if err := atomicfile.Lock(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return lock, nil
}

// firstError prefers a real cause over the cancellations it triggered.
func firstError(errs <-chan error) error {
	var first error
	for err := range errs {
		if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	return first
}

type download struct {
	c         *Client
	src       backend
	f         manifests.File
	file      *os.File // locked; reads, and writes when direct I/O is off
	st        *downloadState
	statePath string
	prog      *fileProgress
	bounds    []segment
	done      []*atomic.Int64

	// direct, when set, is a second descriptor of the partial file with
	// O_DIRECT on; it is dropped at the first write the filesystem refuses.
	direct   *os.File
	directMu sync.Mutex

	bufSize  int
	free     chan []byte   // piece buffers the hash and the writes are done with
	tokens   chan struct{} // one per piece taken and not yet hashed and written
	ready    []chan *piece // piece i, once a worker has taken it
	mu       sync.Mutex    // saveState
	lastSave time.Time

	transferred atomic.Int64
}

// piece is a range being fetched: buf receives its bytes from offset from
// on (the bytes before from were on disk from an earlier run), recvd of
// them so far. The hash follows recvd; the piece's writer follows in
// writeUnits; whichever of the two finishes last frees the buffer.
type piece struct {
	i     int
	from  int64
	buf   []byte
	recvd atomic.Int64
	more  chan struct{} // poked when recvd moves
	refs  atomic.Int32
}

func (dl *download) release(p *piece) {
	if p.refs.Add(-1) != 0 {
		return
	}
	if p.buf != nil {
		select {
		case dl.free <- p.buf[:cap(p.buf)]:
		default:
		}
	}
	<-dl.tokens
}

// unitWrite is [start, end) of a piece's buffer to write to the file.
type unitWrite struct {
	p          *piece
	start, end int
}

// writer writes the units of one worker's pieces, in order, and moves each
// piece's recorded progress after its bytes are on disk.
func (dl *download) writer(ctx context.Context, writes <-chan unitWrite, fail func(error)) {
	failed := false
	for u := range writes {
		if failed || ctx.Err() != nil {
			continue
		}
		if err := dl.writeAt(u.p.buf[u.start:u.end], u.p.from+int64(u.start)); err != nil {
			failed = true
			fail(fmt.Errorf("layer %s: %w", dl.f.Path, err))
			continue
		}
		dl.done[u.p.i].Add(int64(u.end - u.start))
		dl.maybeSave()
		if u.end == len(u.p.buf) {
			dl.release(u.p)
		}
	}
}

// directDownloads turns direct writes of downloads off (tests of the
// buffered path, which filesystems without O_DIRECT take).
var directDownloads = directio.Supported

func (dl *download) openDirect(path string) {
	if !directDownloads {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	if directio.Set(f, true) != nil {
		f.Close()
		return
	}
	dl.direct = f
}

func (dl *download) closeDirect() {
	dl.directMu.Lock()
	defer dl.directMu.Unlock()
	if dl.direct != nil {
		dl.direct.Close()
		dl.direct = nil
	}
}

// writeAt writes b (from a piece buffer) at off: directly when it can, with
// the length padded to a whole block (only the last block of a blob is
// short; the file is truncated to size at the end), else through the page
// cache, starting its writeback at once so the final fsync finds little.
func (dl *download) writeAt(b []byte, off int64) error {
	dl.directMu.Lock()
	direct := dl.direct
	dl.directMu.Unlock()
	if direct != nil && off%directio.Align == 0 {
		n := int(directio.RoundUp(int64(len(b))))
		if n > cap(b) {
			n = len(b) &^ (directio.Align - 1)
		}
		padded := b[:n]
		clear(padded[len(b):])
		_, err := direct.WriteAt(padded, off)
		if err == nil && n >= len(b) {
			return nil
		}
		if err == nil {
			b, off = b[n:], off+int64(n)
		} else if !errors.Is(err, syscall.EINVAL) {
			return Explain(err, "") // an *os.PathError: it names the file
		} else {
			// The filesystem took O_DIRECT at open but refuses the writes.
			dl.closeDirect()
		}
	}
	if _, err := dl.file.WriteAt(b, off); err != nil {
		return Explain(err, "") // an *os.PathError: it names the file
	}
	atomicfile.StartWriteback(dl.file, off, int64(len(b)))
	return nil
}

func (dl *download) buffer() []byte {
	select {
	case b := <-dl.free:
		return b
	default:
		return directio.Buffer(dl.bufSize)
	}
}

// saveState records how far each range got. The data was written before
// the counters moved, so the state never claims bytes the file lacks.
func (dl *download) saveState() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for i := range dl.st.Segments {
		dl.st.Segments[i].Done = dl.done[i].Load()
	}
	_ = dl.c.cache.writeJSON(dl.statePath, dl.st)
	dl.lastSave = time.Now()
}

func (dl *download) maybeSave() {
	dl.mu.Lock()
	due := time.Since(dl.lastSave) > 250*time.Millisecond
	dl.mu.Unlock()
	if due {
		dl.saveState()
	}
}

// segment downloads the rest of piece i into a buffer, which the hash
// follows as it fills, retrying transient failures from where it stopped.
func (dl *download) segment(ctx context.Context, i int, writes chan<- unitWrite) error {
	seg := dl.bounds[i]
	from := seg.Start + dl.done[i].Load()
	p := &piece{i: i, from: min(from, seg.End)}
	if from >= seg.End {
		p.refs.Store(1)
		dl.ready[i] <- p
		return nil
	}
	p.buf = dl.buffer()[:seg.End-from]
	p.more = make(chan struct{}, 1)
	p.refs.Store(2)
	dl.ready[i] <- p
	submitted := 0
	attempt := 0
	for {
		err := dl.receive(ctx, p, &submitted, writes)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempt++
		if attempt >= maxAttempts || !isTransient(err) {
			return fmt.Errorf("layer %s: %w", dl.f.Path, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// receive reads the rest of a piece in writeUnits, handing each to the
// hash (recvd) and to the writer as it completes.
func (dl *download) receive(ctx context.Context, p *piece, submitted *int, writes chan<- unitWrite) error {
	recvd := int(p.recvd.Load())
	end := p.from + int64(len(p.buf))
	rc, err := dl.src.openRange(ctx, dl.f.Digest, dl.f.Size, p.from+int64(recvd), end)
	if err != nil {
		return err
	}
	defer rc.Close()
	body := io.LimitReader(rc, int64(len(p.buf)-recvd))
	for recvd < len(p.buf) {
		unit := min(*submitted+writeUnit, len(p.buf))
		n, err := io.ReadFull(body, p.buf[recvd:unit])
		recvd += n
		dl.transferred.Add(int64(n))
		dl.prog.add(int64(n))
		if n > 0 {
			p.recvd.Store(int64(recvd))
			select {
			case p.more <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return fmt.Errorf("GET blob %s: short body at %d of %d: %w", dl.f.Digest, p.from+int64(recvd), end, err)
		}
		select {
		case writes <- unitWrite{p: p, start: *submitted, end: unit}:
			*submitted = unit
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// hash takes the pieces in order, hashing the bytes an earlier run left on
// disk (read back) and then those received now, from the piece's buffer as
// they arrive, and returns the digest once every piece is in.
func (dl *download) hash(ctx context.Context) (digest.Digest, error) {
	h := sha256.New()
	var rbuf []byte
	for i, seg := range dl.bounds {
		var p *piece
		select {
		case p = <-dl.ready[i]:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if p.from > seg.Start {
			if rbuf == nil {
				rbuf = make([]byte, 1<<20)
			}
			if _, err := io.CopyBuffer(h, io.NewSectionReader(dl.file, seg.Start, p.from-seg.Start), rbuf); err != nil {
				return "", fmt.Errorf("read %s: %w", dl.file.Name(), err)
			}
		}
		for hashed := 0; hashed < len(p.buf); {
			if n := int(p.recvd.Load()); n > hashed {
				h.Write(p.buf[hashed:n])
				hashed = n
				continue
			}
			select {
			case <-p.more:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		dl.release(p)
	}
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), nil
}
