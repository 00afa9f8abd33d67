package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// A blob is fetched as pieces of pieceSize, handed out in order to
// Parallel workers, each piece one Range request. Handing them out in order
// keeps the written prefix growing steadily, so the hash, which must see the
// bytes in order, follows the download instead of waiting for its end.
const pieceSize = 16 << 20

// downloadState is a download in progress, next to its partial file, so a
// pull killed at any point continues where each range stood.
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
	if st.Size != size || len(st.Segments) == 0 || int64(len(st.Segments)) > size/pieceSize+1 {
		return false
	}
	var next int64
	for _, s := range st.Segments {
		if s.Start != next || s.End < s.Start || s.Done < 0 || s.Done > s.End-s.Start {
			return false
		}
		next = s.End
	}
	return next == size
}

func planSegments(size int64) []segment {
	var segs []segment
	for start := int64(0); start < size || len(segs) == 0; start += pieceSize {
		segs = append(segs, segment{Start: start, End: min(start+pieceSize, size)})
	}
	return segs
}

// source is where a pull reads an artifact: a registry, or a bucket.
type source interface {
	// fetchManifest returns a manifest and its digest, checked against want
	// when want is set.
	fetchManifest(ctx context.Context, reference string, want digest.Digest) ([]byte, digest.Digest, error)
	// fetchSmall returns a small blob whole, verified.
	fetchSmall(ctx context.Context, d digest.Digest, size, limit int64) ([]byte, error)
	// openRange streams bytes [off, end) of a blob of the given size.
	openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error)
}

func (r *repo) openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error) {
	req, err := r.newRequest(ctx, http.MethodGet, r.url("/v2/%s/blobs/%s", r.name, d), nil)
	if err != nil {
		return nil, err
	}
	whole := off == 0 && end == size
	if !whole {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	}
	resp, err := r.do(req, http.StatusOK, http.StatusPartialContent)
	if err != nil {
		return nil, err
	}
	if !whole && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("GET blob %s: the registry ignored Range (status %d): cannot resume or split", d, resp.StatusCode)
	}
	return resp.Body, nil
}

// fetchSmall reads a small blob (the config) whole, verified.
func (r *repo) fetchSmall(ctx context.Context, d digest.Digest, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d-byte limit", d, size, limit)
	}
	req, err := r.newRequest(ctx, http.MethodGet, r.url("/v2/%s/blobs/%s", r.name, d), nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, size+1))
	if err != nil {
		return nil, fmt.Errorf("GET blob %s: %w", d, err)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("blob %s: got %d bytes, want %d", d, len(b), size)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, &DigestError{What: "blob " + d.String(), Got: got.String(), Want: d.String()}
	}
	return b, nil
}

// fetchBlob brings a layer into the cache: several ranges in parallel for a
// large blob, each continuing a previous interrupted run, hashed in order as
// the contiguous prefix grows. The blob enters the cache only verified.
// It returns the bytes transferred.
func (c *Client) fetchBlob(ctx context.Context, src source, f manifests.File, workers int, prog *fileProgress) (int64, error) {
	cache := c.cache
	if cache.HasBlob(f.Digest, f.Size) {
		prog.done()
		return 0, nil
	}
	partial := filepath.Join(cache.dir, "partial", f.Digest.Encoded())
	statePath := partial + ".json"
	file, err := openLockedPartial(partial)
	if err != nil {
		return 0, err
	}
	defer file.Close() // releases the lock
	// Another process may have finished this blob while we waited.
	if cache.HasBlob(f.Digest, f.Size) {
		prog.done()
		return 0, nil
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

	dl := &download{c: c, src: src, f: f, file: file, st: &st, statePath: statePath, prog: prog, wake: make(chan struct{}, 1)}
	// The range bounds never change; the goroutines read this copy while
	// saveState rewrites st under its lock.
	dl.bounds = append([]segment(nil), st.Segments...)
	done := int64(0)
	for i := range st.Segments {
		dl.done = append(dl.done, &atomic.Int64{})
		dl.done[i].Store(st.Segments[i].Done)
		done += st.Segments[i].Done
	}
	prog.set(done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	workers = max(1, min(workers, len(st.Segments)))
	if workers == 1 && dl.prefix() == done {
		// One worker writes in order: hash each buffer as it is written
		// (after the part already on disk), with no second read.
		dl.inline = sha256.New()
		var hashed int64
		if err := catchUp(ctx, file, dl.inline, &hashed, done); err != nil {
			return 0, err
		}
	}
	errs := make(chan error, workers+1)
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(dl.bounds) || ctx.Err() != nil {
					return
				}
				if err := dl.segment(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
	sum := make(chan digest.Digest, 1)
	if dl.inline == nil {
		go func() {
			d, err := dl.hash(ctx)
			if err != nil {
				errs <- err
				cancel()
			}
			sum <- d
		}()
	}
	wg.Wait()
	dl.notify()
	var got digest.Digest
	if dl.inline == nil {
		got = <-sum
	} else if dl.prefix() == f.Size {
		got = digest.NewDigestFromBytes(digest.SHA256, dl.inline.Sum(nil))
	}
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
	if err := file.Sync(); err != nil {
		return dl.transferred.Load(), fmt.Errorf("sync %s: %w", partial, Explain(err, ""))
	}
	if err := cache.addBlob(f.Digest, partial); err != nil {
		return dl.transferred.Load(), err
	}
	os.Remove(statePath)
	prog.done()
	return dl.transferred.Load(), nil
}

// openLockedPartial opens (creating) the partial file of a download and
// takes its lock, so two pulls of one blob, in two processes, take turns
// instead of writing one file at once. A partial that was moved into the
// cache while we waited for its lock is not ours to write: start again.
func openLockedPartial(partial string) (*os.File, error) {
	for {
		file, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", partial, Explain(err, ""))
		}
		if err := lockFile(file); err != nil {
			file.Close()
			return nil, fmt.Errorf("lock %s: %w", partial, err)
		}
		fi, err1 := file.Stat()
		pi, err2 := os.Stat(partial)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return file, nil
		}
		file.Close()
	}
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
	src       source
	f         manifests.File
	file      *os.File
	st        *downloadState
	statePath string
	prog      *fileProgress
	bounds    []segment
	done      []*atomic.Int64
	// inline, when set, hashes the bytes as the single worker writes them.
	inline      hash.Hash
	transferred atomic.Int64
	wake        chan struct{}
	mu          sync.Mutex
	lastSave    time.Time
}

func (dl *download) notify() {
	select {
	case dl.wake <- struct{}{}:
	default:
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

// segment downloads one range, retrying transient failures from where it
// stopped.
func (dl *download) segment(ctx context.Context, i int) error {
	seg := dl.bounds[i]
	attempt := 0
	for {
		off := seg.Start + dl.done[i].Load()
		if off >= seg.End {
			return nil
		}
		err := dl.fetchRange(ctx, i, off, seg.End)
		if err == nil {
			startWriteback(dl.file, seg.Start, seg.End-seg.Start)
			continue
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

func (dl *download) fetchRange(ctx context.Context, i int, off, end int64) error {
	rc, err := dl.src.openRange(ctx, dl.f.Digest, dl.f.Size, off, end)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := make([]byte, 1<<20)
	body := io.LimitReader(rc, end-off)
	for off < end {
		n, rerr := io.ReadFull(body, buf[:min(int64(len(buf)), end-off)])
		if n > 0 {
			if _, err := dl.file.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("write %s: %w", dl.file.Name(), Explain(err, ""))
			}
			if dl.inline != nil {
				dl.inline.Write(buf[:n])
			}
			off += int64(n)
			dl.done[i].Add(int64(n))
			dl.transferred.Add(int64(n))
			dl.prog.add(int64(n))
			dl.notify()
			dl.maybeSave()
		}
		if rerr != nil {
			if off < end {
				return fmt.Errorf("GET blob %s: short body at %d of %d: %w", dl.f.Digest, off, end, rerr)
			}
			break
		}
	}
	return nil
}

// prefix is how many bytes from the start are all written.
func (dl *download) prefix() int64 {
	var p int64
	for i, s := range dl.bounds {
		d := dl.done[i].Load()
		p = s.Start + d
		if s.Start+d < s.End {
			return p
		}
	}
	return p
}

// hash follows the downloads, hashing the written prefix in order (from the
// page cache), and returns the digest once every byte is in.
func (dl *download) hash(ctx context.Context) (digest.Digest, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var hashed int64
	for {
		p := dl.prefix()
		for hashed < p {
			n, err := dl.file.ReadAt(buf[:min(int64(len(buf)), p-hashed)], hashed)
			h.Write(buf[:n])
			hashed += int64(n)
			if err != nil && !(errors.Is(err, io.EOF) && hashed == p) {
				return "", fmt.Errorf("read %s: %w", dl.file.Name(), err)
			}
		}
		if hashed >= dl.f.Size {
			return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-dl.wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
