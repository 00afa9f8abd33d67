package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelctl/modelctl/registry/storage"
)

// A resumable write of PATH is an S3 multipart upload at PATH's key, plus a
// directory PREFIX/.s3-writes/PATH/.w/ holding
//
//	state      JSON: the upload id, the parts uploaded, and two checkpoints
//	seg-<rand> the bytes after the last part (below one part's size)
//
// Parts have the target size of their number (partTarget); the bytes after
// the last full part stay in a local spool file (spool.go) and, on Close, go
// to small segment objects, so a write's parts never depend on how the
// caller chunked it.
//
// A checkpoint is what one Close made durable: a number of parts and the
// segments after them. The state keeps the last checkpoint and the one the
// writer resumed from, because the layout records an upload's offset after
// Close: a crash in between resumes at the previous checkpoint, after parts
// that must be dropped. Offsets elsewhere inside uploaded parts cannot be
// resumed (S3 cannot read a part back) and fail with an error saying so.

const (
	stateName     = "state"
	maxStateSize  = 4 << 20
	maxSegments   = 16
	writeDirMark  = "/.w/"
	stateVersion  = 1
	segmentPrefix = "seg-"
)

type partInfo struct {
	Number int    `json:"n"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}

type segmentInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

type checkpoint struct {
	// Parts is how many of writeState.Parts (a prefix) it uses.
	Parts    int           `json:"parts"`
	Segments []segmentInfo `json:"segments,omitempty"`
	Size     int64         `json:"size"`
}

type writeState struct {
	Version  int         `json:"v"`
	Path     string      `json:"path"`
	UploadID string      `json:"uploadId,omitempty"`
	Started  time.Time   `json:"started"`
	Parts    []partInfo  `json:"parts,omitempty"`
	Current  checkpoint  `json:"current"`
	Previous *checkpoint `json:"previous,omitempty"`
}

// partTarget is the size of part n (1-based): base for parts 1-1000, twice
// that for 1001-2000, and so on, so that 10,000 parts of a 5 MiB base hold
// 268 GiB (a 100 GiB blob needs parts of at most 6 times the base).
func partTarget(n int, base int64) int64 {
	return base * int64(1+(n-1)/1000)
}

// writesKey is the key prefix of the writes at or below path p.
func (d *Driver) writesKey(p string) string { return d.base + writesDir + "/" + p + "/" }

// writeDir is the directory of the write of path p. Its last component
// starts with ".", which no path component can, so the directories of p and
// of p's children never collide.
func (d *Driver) writeDir(p string) string { return d.base + writesDir + "/" + p + writeDirMark }

type writer struct {
	d    *Driver
	ctx  context.Context // for part uploads and Close: detached from cancellation
	path string
	key  string
	dir  string

	uploadID string
	started  time.Time
	parts    []partInfo // uploaded, in any order until wait() returns
	nextPart int
	// sp holds the bytes after the last part (nil: none, or, after Close,
	// all of them in segs); its first segBytes bytes are durable in segs.
	sp       *spool
	segs     []segmentInfo
	segBytes int
	// resumed is the checkpoint this writer started from (nil at offset 0).
	resumed *checkpoint
	// owned are the segment names this writer knows of; those no state
	// names any more are deleted after the next state write.
	owned []string
	size  int64

	closed, finished bool
	// ephemeral writes (PutStream) keep no state: they cannot be resumed,
	// and two of them on one path do not share anything.
	ephemeral bool

	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error // first failed part upload
}

// Writer implements storage.Driver.
func (d *Driver) Writer(ctx context.Context, p string, offset int64) (storage.FileWriter, error) {
	k, err := d.key(p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &writer{
		d:        d,
		ctx:      context.WithoutCancel(ctx),
		path:     p,
		key:      k,
		dir:      d.writeDir(p),
		nextPart: 1,
		started:  time.Now().UTC(),
		sem:      make(chan struct{}, d.cfg.Concurrency),
	}
	st, found, err := d.readState(ctx, w.dir)
	if err != nil {
		return nil, d.mapErr(ctx, "resume write", p, err)
	}
	if offset == 0 {
		if found {
			if err := d.dropWrites(ctx, w.dir); err != nil {
				return nil, d.mapErr(ctx, "restart write", p, err)
			}
		}
		return w, nil
	}
	if !found {
		return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset}
	}
	if offset > st.Current.Size {
		return nil, &storage.InvalidOffsetError{Driver: driverName, Path: p, Offset: offset, Have: st.Current.Size}
	}
	if err := w.resume(ctx, st, offset); err != nil {
		return nil, err
	}
	return w, nil
}

// resume loads the checkpoint of st that offset falls in.
func (w *writer) resume(ctx context.Context, st *writeState, offset int64) error {
	w.uploadID, w.started = st.UploadID, st.Started
	for _, s := range st.Current.Segments {
		w.owned = append(w.owned, s.Name)
	}
	if st.Previous != nil {
		for _, s := range st.Previous.Segments {
			w.owned = append(w.owned, s.Name)
		}
	}
	partsEnd := func(n int) int64 {
		var e int64
		for _, p := range st.Parts[:n] {
			e += p.Size
		}
		return e
	}
	var cp *checkpoint
	for _, c := range []*checkpoint{&st.Current, st.Previous} {
		if c != nil && c.Parts <= len(st.Parts) && partsEnd(c.Parts) <= offset && offset <= c.Size {
			cp = c
			break
		}
	}
	if cp == nil {
		return fmt.Errorf("%s: cannot resume %s at offset %d: it lies inside a part uploaded after the last two offsets made durable (%d, %s); restart the write",
			driverName, w.path, offset, st.Current.Size, prevSize(st))
	}
	w.parts = slices.Clone(st.Parts[:cp.Parts])
	w.nextPart = cp.Parts + 1
	need := offset - partsEnd(cp.Parts)
	if err := w.loadSegments(ctx, cp.Segments, need); err != nil {
		return err
	}
	w.size = offset
	w.resumed = &checkpoint{Parts: cp.Parts, Segments: slices.Clone(w.segs), Size: partsEnd(cp.Parts) + int64(w.segBytes)}
	return nil
}

// loadSegments reads the first need bytes of segs into a new spool; the
// segments wholly inside them become the writer's durable segments.
func (w *writer) loadSegments(ctx context.Context, segs []segmentInfo, need int64) error {
	w.segs, w.segBytes = nil, 0
	if need == 0 {
		return nil
	}
	sp, err := w.d.newSpool()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if need == 0 {
			break
		}
		take := min(s.Size, need)
		if err := w.d.getSegment(ctx, w.dir+s.Name, s.Size, take, sp); err != nil {
			sp.close()
			return w.d.mapErr(ctx, "resume write: segment "+s.Name+" of", w.path, err)
		}
		if take == s.Size {
			w.segs = append(w.segs, s)
			w.segBytes += int(s.Size)
		}
		need -= take
	}
	if need != 0 {
		sp.close()
		return fmt.Errorf("%s: resume write %s: the state's segments hold %d bytes too few", driverName, w.path, need)
	}
	w.sp = sp
	return nil
}

// getSegment appends the first take bytes of the segment at key, which the
// state says has size bytes, to sp.
func (d *Driver) getSegment(ctx context.Context, key string, size, take int64, sp *spool) error {
	body, info, _, err := d.core.GetObject(ctx, d.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer body.Close()
	if info.Size != size {
		return fmt.Errorf("segment has %d bytes, the state says %d", info.Size, size)
	}
	n, err := io.Copy(io.NewOffsetWriter(sp.f, sp.n), io.LimitReader(body, take))
	sp.n += n
	if err != nil {
		return err
	}
	if n != take {
		return fmt.Errorf("segment ended after %d of %d bytes", n, size)
	}
	return nil
}

func prevSize(st *writeState) string {
	if st.Previous == nil {
		return "none"
	}
	return fmt.Sprint(st.Previous.Size)
}

func (w *writer) Size() int64 { return w.size }

func (w *writer) Write(b []byte) (int, error) {
	if w.closed || w.finished {
		return 0, fmt.Errorf("%s: write %s: %w", driverName, w.path, errWriterDone)
	}
	if err := w.uploadErr(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		target := partTarget(w.nextPart, w.d.cfg.PartSize)
		if w.sp == nil {
			sp, err := w.d.newSpool()
			if err != nil {
				return n, err
			}
			w.sp = sp
		}
		c := int(min(target-w.sp.n, int64(len(b))))
		if err := w.sp.write(b[:c]); err != nil {
			return n, err
		}
		b = b[c:]
		n += c
		w.size += int64(c)
		if w.sp.n >= target {
			if err := w.uploadPart(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

var errWriterDone = errors.New("writer already closed, committed or cancelled")

// uploadPart starts the upload of the spool as the next part, at most
// Concurrency at a time, and hands the spool over to it.
func (w *writer) uploadPart() error {
	if w.nextPart > maxParts {
		return fmt.Errorf("%s: write %s: over %d parts (%d bytes)", driverName, w.path, maxParts, w.size)
	}
	if w.uploadID == "" {
		id, err := w.d.core.NewMultipartUpload(w.ctx, w.d.cfg.Bucket, w.key, minio.PutObjectOptions{})
		if err != nil {
			return w.d.mapErr(w.ctx, "start multipart upload", w.path, err)
		}
		w.uploadID = id
	}
	sp, num := w.sp, w.nextPart
	w.sp, w.nextPart = nil, w.nextPart+1
	// The segments hold bytes of this part now; the next state write
	// drops them (the checkpoint before it keeps its own).
	w.segs, w.segBytes = nil, 0
	w.sem <- struct{}{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.sem }()
		defer sp.close()
		part, err := w.d.core.PutObjectPart(w.ctx, w.d.cfg.Bucket, w.key, w.uploadID, num,
			sp.section(0), sp.n, minio.PutObjectPartOptions{})
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = fmt.Errorf("%s: write %s: part %d: %w", driverName, w.path, num, err)
			}
		} else {
			w.parts = append(w.parts, partInfo{Number: num, ETag: part.ETag, Size: sp.n})
		}
	}()
	return nil
}

func (w *writer) uploadErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait waits for the part uploads and sorts the parts.
func (w *writer) wait() error {
	w.wg.Wait()
	slices.SortFunc(w.parts, func(a, b partInfo) int { return a.Number - b.Number })
	return w.uploadErr()
}

// Close implements storage.FileWriter: the parts are uploaded, the bytes
// after them stored as a segment, and the state written.
func (w *writer) Close() error {
	if w.closed || w.finished {
		return fmt.Errorf("%s: close %s: %w", driverName, w.path, errWriterDone)
	}
	w.closed = true
	if w.ephemeral {
		return fmt.Errorf("%s: close %s: a streamed put cannot be resumed", driverName, w.path)
	}
	if err := w.wait(); err != nil {
		return err
	}
	if len(w.segs) >= maxSegments {
		// Many tiny chunks: rewrite the tail as one segment.
		w.segs, w.segBytes = nil, 0
	}
	// The spool is done with once its bytes are in segments: a Commit
	// after Close reads them back.
	defer func() { w.sp.close(); w.sp = nil }()
	if w.sp != nil && w.sp.n > int64(w.segBytes) {
		name := segmentPrefix + randomName()
		tail := w.sp.section(int64(w.segBytes))
		if err := w.d.putReader(w.ctx, w.dir+name, tail, tail.Size()); err != nil {
			return w.d.mapErr(w.ctx, "close: store tail of", w.path, err)
		}
		w.owned = append(w.owned, name)
		w.segs = append(w.segs, segmentInfo{Name: name, Size: tail.Size()})
		w.segBytes = int(w.sp.n)
	}
	st := writeState{
		Version:  stateVersion,
		Path:     w.path,
		UploadID: w.uploadID,
		Started:  w.started,
		Parts:    w.parts,
		Current:  checkpoint{Parts: len(w.parts), Segments: w.segs, Size: w.size},
		Previous: w.resumed,
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := w.d.putObject(w.ctx, w.dir+stateName, data); err != nil {
		return w.d.mapErr(w.ctx, "close: store state of", w.path, err)
	}
	// Segments no checkpoint names any more; a failure here only leaves
	// garbage for Cleanup.
	keep := map[string]bool{}
	for _, s := range w.segs {
		keep[s.Name] = true
	}
	if w.resumed != nil {
		for _, s := range w.resumed.Segments {
			keep[s.Name] = true
		}
	}
	var drop []string
	var owned []string
	for _, name := range w.owned {
		if keep[name] {
			owned = append(owned, name)
		} else {
			drop = append(drop, w.dir+name)
		}
	}
	w.owned = owned
	_ = w.d.removeKeys(w.ctx, drop)
	return nil
}

// Cancel implements storage.FileWriter: the multipart upload is aborted
// and the write's directory removed.
func (w *writer) Cancel(ctx context.Context) error {
	_ = w.wait()
	w.closed, w.finished = true, true
	w.sp.close()
	w.sp = nil
	if w.uploadID != "" {
		if err := w.d.core.AbortMultipartUpload(ctx, w.d.cfg.Bucket, w.key, w.uploadID); err != nil && !isNotFound(err) {
			return w.d.mapErr(ctx, "cancel write", w.path, err)
		}
	}
	if w.ephemeral {
		return nil
	}
	return w.d.mapErr(ctx, "cancel write", w.path, w.d.dropWrites(ctx, w.dir))
}

// Commit implements storage.FileWriter: a write that never filled a part is
// one PUT; otherwise the rest goes up as the last part and the multipart
// upload is completed. Either is atomic on S3.
func (w *writer) Commit(ctx context.Context) error {
	if w.finished {
		return fmt.Errorf("%s: commit %s: %w", driverName, w.path, errWriterDone)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.wait(); err != nil {
		return err
	}
	if w.sp == nil && w.segBytes > 0 {
		// Closed before: the tail is in the segments.
		if err := w.loadSegments(ctx, w.segs, int64(w.segBytes)); err != nil {
			return err
		}
	}
	var tail *io.SectionReader
	if w.sp != nil {
		tail = w.sp.section(0)
	} else {
		tail = io.NewSectionReader(emptyReaderAt{}, 0, 0)
	}
	if len(w.parts) == 0 {
		if err := w.d.putReader(ctx, w.key, tail, tail.Size()); err != nil {
			return w.d.mapErr(ctx, "commit", w.path, err)
		}
		if w.uploadID != "" {
			_ = w.d.core.AbortMultipartUpload(ctx, w.d.cfg.Bucket, w.key, w.uploadID)
		}
	} else {
		if tail.Size() > 0 {
			part, err := w.d.core.PutObjectPart(ctx, w.d.cfg.Bucket, w.key, w.uploadID, w.nextPart,
				tail, tail.Size(), minio.PutObjectPartOptions{})
			if err != nil {
				return w.d.mapErr(ctx, "commit: last part of", w.path, err)
			}
			w.parts = append(w.parts, partInfo{Number: w.nextPart, ETag: part.ETag, Size: tail.Size()})
		}
		complete := make([]minio.CompletePart, len(w.parts))
		for i, p := range w.parts {
			complete[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
		}
		if _, err := w.d.core.CompleteMultipartUpload(ctx, w.d.cfg.Bucket, w.key, w.uploadID, complete, minio.PutObjectOptions{}); err != nil {
			return w.d.mapErr(ctx, "commit: complete upload of", w.path, err)
		}
	}
	w.closed, w.finished = true, true
	w.sp.close()
	w.sp = nil
	if w.ephemeral {
		return nil
	}
	// The object is in place; what is left is bookkeeping, and Cleanup
	// removes it should this fail.
	drop := []string{w.dir + stateName}
	for _, name := range w.owned {
		drop = append(drop, w.dir+name)
	}
	_ = w.d.removeKeys(context.WithoutCancel(ctx), drop)
	return nil
}

// PutStream stores what r yields at path in one pass: parts upload while r
// is read, and the object appears, atomically, only when r ends with io.EOF.
// Any other error from r (a verifying reader's digest mismatch at the end, a
// dropped connection) or a cancelled ctx aborts the upload and leaves
// nothing. It keeps no resumable state, so two PutStreams of one path do not
// interfere (the last to finish wins) and neither disturbs a Writer there.
// It returns the number of bytes stored.
//
// The registry uses it when a blob's digest is known before its bytes
// arrive (a monolithic upload): the bytes go straight to the content
// address, with no server-side copy afterwards.
func (d *Driver) PutStream(ctx context.Context, p string, r io.Reader) (int64, error) {
	k, err := d.key(p)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	w := &writer{
		d:         d,
		ctx:       ctx,
		path:      p,
		key:       k,
		nextPart:  1,
		sem:       make(chan struct{}, d.cfg.Concurrency),
		ephemeral: true,
	}
	n, err := storage.Copy(w, r)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		if err = w.Commit(ctx); err == nil {
			return n, nil
		}
	}
	_ = w.Cancel(context.WithoutCancel(ctx))
	if ctx.Err() != nil {
		return n, fmt.Errorf("%s: put %s: %w", driverName, p, ctx.Err())
	}
	return n, fmt.Errorf("%s: put %s: %w", driverName, p, err)
}

type emptyReaderAt struct{}

func (emptyReaderAt) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }

// readState reads the state in dir; found is false when there is none.
func (d *Driver) readState(ctx context.Context, dir string) (*writeState, bool, error) {
	data, err := d.getObject(ctx, dir+stateName, maxStateSize)
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	var st writeState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, false, fmt.Errorf("state %s: %w", dir+stateName, err)
	}
	if st.Version != stateVersion || len(st.Parts) > maxParts {
		return nil, false, fmt.Errorf("state %s: version %d with %d parts is not one this driver writes", dir+stateName, st.Version, len(st.Parts))
	}
	if err := st.check(); err != nil {
		return nil, false, fmt.Errorf("state %s: %w", dir+stateName, err)
	}
	return &st, true, nil
}

// check verifies that the state adds up, so that no size in it, which
// resuming allocates and reads by, is taken on trust.
func (st *writeState) check() error {
	for i, p := range st.Parts {
		if p.Number != i+1 || p.Size < 0 || p.Size > 5<<30 {
			return fmt.Errorf("part %d of %d is number %d with %d bytes", i+1, len(st.Parts), p.Number, p.Size)
		}
	}
	for _, cp := range []*checkpoint{&st.Current, st.Previous} {
		if cp == nil {
			continue
		}
		if cp.Parts < 0 || cp.Parts > len(st.Parts) {
			return fmt.Errorf("checkpoint uses %d of %d parts", cp.Parts, len(st.Parts))
		}
		size := int64(0)
		for _, p := range st.Parts[:cp.Parts] {
			size += p.Size
		}
		tail := int64(0)
		for _, s := range cp.Segments {
			if s.Size < 0 || !strings.HasPrefix(s.Name, segmentPrefix) || strings.Contains(s.Name, "/") {
				return fmt.Errorf("bad segment %q of %d bytes", s.Name, s.Size)
			}
			tail += s.Size
		}
		// The bytes after the parts are less than the next part (they
		// would have been uploaded as it otherwise); 512 MiB is New's
		// largest base part size, times the largest multiplier.
		if tail > 10*512<<20 || size+tail != cp.Size {
			return fmt.Errorf("checkpoint of %d bytes is %d in parts and %d in segments", cp.Size, size, tail)
		}
	}
	return nil
}

// dropWrites aborts the multipart uploads of the writes whose directories
// are below prefix and removes those directories.
func (d *Driver) dropWrites(ctx context.Context, prefix string) error {
	objs, err := d.listAll(ctx, prefix)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(objs))
	for _, oi := range objs {
		keys = append(keys, oi.Key)
		if !strings.HasSuffix(oi.Key, writeDirMark+stateName) {
			continue
		}
		st, found, err := d.readState(ctx, strings.TrimSuffix(oi.Key, stateName))
		if err != nil && ctx.Err() != nil {
			return err
		}
		if err == nil && found && st.UploadID != "" {
			if err := d.core.AbortMultipartUpload(ctx, d.cfg.Bucket, d.base+st.Path, st.UploadID); err != nil && !isNotFound(err) {
				return fmt.Errorf("abort multipart upload of %s: %w", st.Path, err)
			}
		}
	}
	return d.removeKeys(ctx, keys)
}

// getObject reads a whole object of at most limit bytes by key.
func (d *Driver) getObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	body, info, _, err := d.core.GetObject(ctx, d.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if info.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, over %d", key, info.Size, limit)
	}
	var buf bytes.Buffer
	buf.Grow(int(max(info.Size, 0)))
	n, err := io.Copy(&buf, io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%s is over %d bytes", key, limit)
	}
	return buf.Bytes(), nil
}

// putObject stores data at key with one PUT.
func (d *Driver) putObject(ctx context.Context, key string, data []byte) error {
	return d.putSigned(ctx, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
}

// putReader stores size bytes of r at key with one PUT.
func (d *Driver) putReader(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return d.putSigned(ctx, key, r, size, minio.PutObjectOptions{})
}

// putSigned is a PUT of an object the driver holds whole (state, segments,
// small objects): its sha256 is computed first and signed in the header.
// Over plain HTTP minio-go otherwise signs the payload as it streams, with
// 64 KiB of buffers per request; the 200 slow bodies the load test cuts off
// at once each store a segment and a state, and those buffers were the
// server's largest allocation after the copy buffers.
func (d *Driver) putSigned(ctx context.Context, key string, r io.ReadSeeker, size int64, opts minio.PutObjectOptions) error {
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(h, io.LimitReader(r, size), *bp)
	hashBufs.Put(bp)
	if err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	opts.DisableContentSha256 = true
	_, err = d.core.PutObject(ctx, d.cfg.Bucket, key, r, size, "", hex.EncodeToString(h.Sum(nil)), opts)
	return err
}

var hashBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func randomName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
