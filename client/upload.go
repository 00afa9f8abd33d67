package client

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Blob push outcomes, as reported per file.
const (
	StatusExists   = "exists"   // the registry had it (HEAD)
	StatusMounted  = "mounted"  // mounted from another repository
	StatusUploaded = "uploaded" // sent in full
	StatusResumed  = "resumed"  // an interrupted upload was continued
)

// localFile is one file to push.
type localFile struct {
	Path   string // path in the artifact
	Source string // absolute local path
	Info   fs.FileInfo
	Digest digest.Digest // known from the digest cache, or "" until hashed
}

// blobResult is what pushing one blob did.
type blobResult struct {
	Digest      digest.Digest
	Status      string
	Sent        int64 // bytes sent over the network
	ResumedFrom int64 // the committed offset an upload continued from
}

// uploadState is an upload in progress, persisted after every chunk the
// registry acknowledged, so that a push killed at any point continues.
type uploadState struct {
	Location string `json:"location"`
	Size     int64  `json:"size"`
	// Offset is how many bytes Hash covers (and the registry had acknowledged).
	Offset int64  `json:"offset"`
	Hash   []byte `json:"hash"`
}

func (r *repo) blobExists(ctx context.Context, d digest.Digest) (bool, error) {
	req, err := r.newRequest(ctx, http.MethodHead, r.url("/v2/%s/blobs/%s", r.name, d), nil)
	if err != nil {
		return false, err
	}
	resp, err := r.do(req, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// mount asks the registry to link d from another repository; a registry
// that cannot (202: it opened an upload instead) gets that session cancelled.
func (r *repo) mount(ctx context.Context, d digest.Digest, from string) (bool, error) {
	u := r.url("/v2/%s/blobs/uploads/?mount=%s&from=%s", r.name, url.QueryEscape(d.String()), url.QueryEscape(from))
	req, err := r.newRequest(ctx, http.MethodPost, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := r.do(req, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return true, nil
	}
	if loc, err := resolveLocation(resp); err == nil {
		if req, err := r.newRequest(ctx, http.MethodDelete, loc, nil); err == nil {
			if resp, err := r.hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	return false, nil
}

// startUpload opens an upload session; it returns its URL and the
// registry's minimum chunk length (0 when it has none).
func (r *repo) startUpload(ctx context.Context) (string, int64, error) {
	req, err := r.newRequest(ctx, http.MethodPost, r.url("/v2/%s/blobs/uploads/", r.name), nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := r.do(req, http.StatusAccepted)
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	loc, err := resolveLocation(resp)
	if err != nil {
		return "", 0, err
	}
	var minChunk int64
	if v := resp.Header.Get("OCI-Chunk-Min-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n <= 1<<32 {
			minChunk = n
		}
	}
	return loc, minChunk, nil
}

// uploadStatus asks how many bytes of an upload the registry has committed.
func (r *repo) uploadStatus(ctx context.Context, loc string) (int64, string, error) {
	req, err := r.newRequest(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := r.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	next := loc
	if resp.Header.Get("Location") != "" {
		if next, err = resolveLocation(resp); err != nil {
			return 0, "", err
		}
	}
	n, err := parseRangeEnd(resp.Header.Get("Range"))
	if err != nil {
		return 0, "", fmt.Errorf("upload status %s: %w", redactURL(loc), err)
	}
	return n, next, nil
}

// parseRangeEnd turns an upload Range header "0-END" into a byte count.
// "0-0" is read as nothing committed: resending one byte is harmless,
// skipping one is not.
func parseRangeEnd(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	h = strings.TrimPrefix(h, "bytes=")
	start, end, ok := strings.Cut(h, "-")
	if !ok || start != "0" {
		return 0, fmt.Errorf("bad Range header %q", h)
	}
	n, err := strconv.ParseInt(end, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad Range header %q", h)
	}
	if n == 0 {
		return 0, nil
	}
	return n + 1, nil
}

// hashingReader hashes what it reads: the body of a PATCH is hashed as it
// is sent, so a file is read once.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	prog *fileProgress
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		if hr.h != nil {
			hr.h.Write(p[:n])
		}
		hr.prog.add(int64(n))
	}
	return n, err
}

// patch sends [off, off+n) of file as one chunk. The request body is the
// file itself, so the HTTP transport hands it to sendfile (no copy through
// user space) on plain-HTTP connections, while a goroutine hashes the same
// range from the page cache: the send and the hash run side by side.
func (r *repo) patch(ctx context.Context, loc string, file *os.File, off, n int64, h hash.Hash, prog *fileProgress) (string, int64, error) {
	var body io.Reader
	var hashed chan error
	stop := make(chan struct{}) // the request is over
	if off+n == fileSize(file) {
		// The transport checks that a body ends where ContentLength says, so
		// the file itself can be the body only for a chunk that runs to its
		// end; then it goes out with sendfile.
		f, err := os.Open(file.Name())
		if err != nil {
			return "", 0, fmt.Errorf("open %s: %w", file.Name(), err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return "", 0, fmt.Errorf("seek %s: %w", file.Name(), err)
		}
		body = f
		hashed = make(chan error, 1)
		if h == nil {
			// The digest is known: nothing to hash, but the progress
			// follows the file offset sendfile moves.
			go followOffset(stop, f, prog, hashed)
		} else {
			go func() {
				_, err := feedFile(file, off, n, &hashingWriter{h: h, prog: prog})
				hashed <- err
			}()
		}
	} else {
		body = &hashingReader{r: io.NewSectionReader(file, off, n), h: h, prog: prog}
	}
	req, err := r.newRequest(ctx, http.MethodPatch, loc, body)
	if err != nil {
		if c, ok := body.(io.Closer); ok {
			c.Close()
		}
		if hashed != nil {
			close(stop)
			<-hashed
		}
		return "", 0, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
	resp, err := r.do(req, http.StatusAccepted, http.StatusNoContent)
	if hashed != nil {
		close(stop)
		if herr := <-hashed; herr != nil && err == nil {
			resp.Body.Close()
			return "", 0, fmt.Errorf("read %s: %w", file.Name(), herr)
		}
	}
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	next := loc
	if resp.Header.Get("Location") != "" {
		if next, err = resolveLocation(resp); err != nil {
			return "", 0, err
		}
	}
	committed := off + n
	if rh := resp.Header.Get("Range"); rh != "" {
		if c, err := parseRangeEnd(rh); err == nil && c > 0 {
			committed = c
		}
	}
	return next, committed, nil
}

func fileSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return -1
	}
	return fi.Size()
}

// followOffset reports the offset of f (which sendfile moves) as progress
// until stop is closed.
func followOffset(stop <-chan struct{}, f *os.File, prog *fileProgress, done chan<- error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if pos, err := f.Seek(0, io.SeekCurrent); err == nil {
			prog.set(pos)
		}
		select {
		case <-stop:
			done <- nil
			return
		case <-t.C:
		}
	}
}

// hashingWriter feeds a hash and the progress counter.
type hashingWriter struct {
	h    hash.Hash
	prog *fileProgress
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.prog.add(int64(len(p)))
	return len(p), nil
}

// finish commits an upload under its digest.
func (r *repo) finish(ctx context.Context, loc string, d digest.Digest, body io.Reader, size int64) error {
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("upload URL %s: %w", redactURL(loc), err)
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err := r.newRequest(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size > 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := r.do(req, http.StatusCreated, http.StatusAccepted, http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// pushBytes uploads small content (config) in one request, unless present.
func (r *repo) pushBytes(ctx context.Context, d digest.Digest, data []byte) error {
	if ok, err := r.blobExists(ctx, d); err != nil || ok {
		return err
	}
	loc, _, err := r.startUpload(ctx)
	if err != nil {
		return err
	}
	return r.finish(ctx, loc, d, strings.NewReader(string(data)), int64(len(data)))
}

// catchUp brings h from offset *hashed to target by reading the local file:
// after an interruption the registry may hold more (or fewer) bytes than
// were hashed, and reading them here is cheaper than sending them again.
func catchUp(ctx context.Context, file *os.File, h hash.Hash, hashed *int64, target int64) error {
	if target < *hashed {
		h.Reset()
		*hashed = 0
	}
	if target == *hashed {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := feedFile(file, *hashed, target-*hashed, h)
	*hashed += n
	if err != nil {
		return fmt.Errorf("read %s: %w", file.Name(), err)
	}
	return nil
}

func marshalHash(h hash.Hash) []byte {
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

func unmarshalHash(h hash.Hash, b []byte) bool {
	return h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b) == nil
}

// isDigestRefused reports a registry refusing an upload's digest: the bytes
// it received hash to something else.
func isDigestRefused(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && (he.Code == "DIGEST_INVALID" || (he.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(he.Message), "digest")))
}

// refusesChunks reports a registry answering a chunked PATCH with an error
// meaning "not like this" rather than "try again".
func refusesChunks(err error) bool {
	var he *HTTPError
	if !errors.As(err, &he) {
		return false
	}
	switch he.Status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusLengthRequired,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusNotImplemented:
		return true
	}
	return false
}

// isUploadGone reports an upload session the registry no longer knows or
// can no longer resume (expired, restarted without state, offset lost).
func isUploadGone(err error) bool {
	var he *HTTPError
	if !errors.As(err, &he) {
		return false
	}
	return he.Status == http.StatusNotFound || he.Status == http.StatusRequestedRangeNotSatisfiable ||
		he.Code == "BLOB_UPLOAD_UNKNOWN" || he.Code == "BLOB_UPLOAD_INVALID" || he.Code == "RANGE_INVALID"
}

func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		// 507: the registry's disk is full; retrying will not free it.
		return he.Status == http.StatusTooManyRequests || (he.Status >= 500 && he.Status != http.StatusInsufficientStorage)
	}
	// Anything below HTTP (reset, EOF, timeout) is worth another try.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errRange)
}

func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(200<<min(attempt, 5)) * time.Millisecond
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

const maxAttempts = 6

// pushFile uploads one file unless the registry has it: HEAD by the cached
// digest, mount from a repository known to hold it, continue an upload
// interrupted earlier, or upload in chunks hashing as it sends.
func (r *repo) pushFile(ctx context.Context, f *localFile, prog *fileProgress) (blobResult, error) {
	c := r.c
	if f.Digest != "" {
		ok, err := r.blobExists(ctx, f.Digest)
		if err != nil {
			return blobResult{}, err
		}
		if ok {
			prog.done()
			return blobResult{Digest: f.Digest, Status: StatusExists}, nil
		}
		for _, from := range c.cache.Locations(f.Digest, r.host) {
			if from == r.name {
				continue
			}
			if ok, err := r.mount(ctx, f.Digest, from); err == nil && ok {
				prog.done()
				return blobResult{Digest: f.Digest, Status: StatusMounted}, nil
			}
		}
	}

	file, err := os.Open(f.Source)
	if err != nil {
		return blobResult{}, fmt.Errorf("open %s: %w", f.Source, err)
	}
	defer file.Close()
	size := f.Info.Size()

	statePath := filepath.Join(c.cache.dir, "uploads", keyName(r.host, r.name, fileKey(f.Source, f.Info))+".json")
	h := sha256.New()
	var hashed, off int64
	var loc string
	var minChunk int64
	res := blobResult{Status: StatusUploaded}

	var st uploadState
	if err := c.cache.readJSON(statePath, &st); err == nil && st.Size == size && st.Location != "" {
		committed, next, err := r.uploadStatus(ctx, st.Location)
		switch {
		case err == nil && committed <= size:
			if unmarshalHash(h, st.Hash) {
				hashed = st.Offset
			} else {
				h.Reset()
			}
			loc, off = next, committed
			if off > 0 {
				res.Status, res.ResumedFrom = StatusResumed, off
			}
		case err != nil && !isUploadGone(err):
			return blobResult{}, err
		}
	}
	if loc == "" {
		os.Remove(statePath)
		if loc, minChunk, err = r.startUpload(ctx); err != nil {
			return blobResult{}, err
		}
		// Saved before the first byte goes out: a push killed during its
		// first (on loopback, only) PATCH still finds the session, and the
		// registry's committed offset, when it is run again.
		_ = c.cache.writeJSON(statePath, uploadState{Location: loc, Size: size, Hash: marshalHash(h)})
	}
	chunk := max(c.chunkSize(r.host), minChunk)
	prog.set(off)
	// A digest from the digest cache is not computed again: the file goes
	// out unread by us (sendfile), and the registry, which hashes what it
	// receives, refuses it if the file changed in a way the cache key
	// (path, size, mtime, inode) missed; then it is hashed and sent again.
	// h and hashed still describe only what was hashed, for a resume that
	// has to hash.
	known := f.Digest != ""
	var sendHash hash.Hash = h
	if known {
		sendHash = nil
	}

	attempt := 0
	for off < size {
		if !known {
			if err := catchUp(ctx, file, h, &hashed, off); err != nil {
				return blobResult{}, err
			}
		}
		checkpoint := marshalHash(h)
		n := min(chunk, size-off)
		next, committed, err := r.patch(ctx, loc, file, off, n, sendHash, prog)
		if err == nil {
			res.Sent += n
			if !known {
				hashed = off + n
			}
			loc, off = next, committed
			if hashed == off || known {
				_ = c.cache.writeJSON(statePath, uploadState{Location: loc, Size: size, Offset: hashed, Hash: marshalHash(h)})
			}
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return blobResult{}, ctx.Err()
		}
		if refusesChunks(err) && off == 0 {
			return r.pushMonolithic(ctx, f, file, prog)
		}
		attempt++
		if attempt >= maxAttempts || (!isTransient(err) && !isUploadGone(err)) {
			return blobResult{}, fmt.Errorf("upload %s: %w", f.Path, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return blobResult{}, err
		}
		// The chunk may have partly arrived: restore the hash to where it
		// was before the chunk and ask the registry where it stands.
		if !known {
			unmarshalHash(h, checkpoint)
			hashed = off
		}
		committed, next, serr := r.uploadStatus(ctx, loc)
		if serr != nil {
			if !isUploadGone(serr) {
				continue
			}
			// The session is lost: start over (only the bytes, not the hash
			// of what is still to send, are lost).
			if loc, _, err = r.startUpload(ctx); err != nil {
				return blobResult{}, err
			}
			h.Reset()
			hashed = 0
			_ = c.cache.writeJSON(statePath, uploadState{Location: loc, Size: size, Hash: marshalHash(h)})
			committed, next = 0, loc
		}
		loc, off = next, committed
		prog.set(off)
	}
	d := f.Digest
	if !known {
		if err := catchUp(ctx, file, h, &hashed, size); err != nil {
			return blobResult{}, err
		}
		d = digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	}
	if err := checkUnchanged(f); err != nil {
		return blobResult{}, err
	}
	if err := r.finish(ctx, loc, d, nil, 0); err != nil {
		if known && isDigestRefused(err) {
			// The file is not what the digest cache says: forget that,
			// and send it again, hashed this time.
			c.cache.ForgetDigest(f.Source, f.Info)
			os.Remove(statePath)
			f.Digest = ""
			prog.set(0)
			again, err := r.pushFile(ctx, f, prog)
			again.Sent += res.Sent
			return again, err
		}
		return blobResult{}, fmt.Errorf("upload %s: commit %s: %w", f.Path, d, err)
	}
	os.Remove(statePath)
	_ = c.cache.StoreDigest(f.Source, f.Info, d)
	c.cache.AddLocation(d, r.host, r.name)
	res.Digest = d
	prog.done()
	return res, nil
}

// pushMonolithic is for registries that refuse chunked PATCHes: the file
// is hashed first (a PUT needs the digest up front), then sent in one PUT.
func (r *repo) pushMonolithic(ctx context.Context, f *localFile, file *os.File, prog *fileProgress) (blobResult, error) {
	d := f.Digest
	if d == "" {
		h := sha256.New()
		var hashed int64
		if err := catchUp(ctx, file, h, &hashed, f.Info.Size()); err != nil {
			return blobResult{}, err
		}
		d = digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	}
	loc, _, err := r.startUpload(ctx)
	if err != nil {
		return blobResult{}, err
	}
	prog.set(0)
	body := &hashingReader{r: io.NewSectionReader(file, 0, f.Info.Size()), h: sha256.New(), prog: prog}
	if err := r.finish(ctx, loc, d, body, f.Info.Size()); err != nil {
		return blobResult{}, fmt.Errorf("upload %s (one PUT, the registry refused chunks): %w", f.Path, err)
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, body.h.Sum(nil)); got != d {
		return blobResult{}, fmt.Errorf("upload %s: %w", f.Path, &DigestError{What: f.Source + " changed while it was sent", Got: got.String(), Want: d.String()})
	}
	_ = r.c.cache.StoreDigest(f.Source, f.Info, d)
	r.c.cache.AddLocation(d, r.host, r.name)
	prog.done()
	return blobResult{Digest: d, Status: StatusUploaded, Sent: f.Info.Size()}, nil
}

// checkUnchanged refuses a file modified while it was being pushed.
func checkUnchanged(f *localFile) error {
	fi, err := os.Stat(f.Source)
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Source, err)
	}
	if fi.Size() != f.Info.Size() || !fi.ModTime().Equal(f.Info.ModTime()) {
		return fmt.Errorf("%s changed while it was pushed: push again", f.Source)
	}
	return nil
}
