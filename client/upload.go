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
	"os"
	"path/filepath"
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

// isDigestRefused reports a backend refusing an upload's digest: the
// bytes it received hash to something else.
func isDigestRefused(err error) bool { return errors.Is(err, errDigestRefused) }

// isUploadGone reports an upload session the registry no longer knows or
// can no longer resume (expired, restarted without state, offset lost).
func isUploadGone(err error) bool {
	if errors.Is(err, errUploadGone) {
		return true
	}
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

// pushBlob uploads one file unless the backend has it: by the cached
// digest, it is there already or mounted from where it is known to be;
// else an upload interrupted earlier continues, or a new one sends the
// file in chunks, hashing as it sends. Every append is recorded in the
// upload state, so a push killed at any point continues.
func (c *Client) pushBlob(ctx context.Context, b backend, f *localFile, prog *fileProgress) (blobResult, error) {
	if f.Digest != "" {
		var status string
		err := retry(ctx, func() error {
			ok, err := b.blobExists(ctx, f.Digest)
			switch {
			case err != nil:
				return err
			case ok:
				status = StatusExists
			default:
				if ok, _ := b.mountBlob(ctx, f.Digest); ok {
					status = StatusMounted
				}
			}
			return nil
		})
		if err != nil {
			return blobResult{}, err
		}
		if status != "" {
			prog.done()
			return blobResult{Digest: f.Digest, Status: status}, nil
		}
	}

	file, err := os.Open(f.Source)
	if err != nil {
		return blobResult{}, fmt.Errorf("open %s: %w", f.Source, err)
	}
	defer file.Close()
	size := f.Info.Size()

	statePath := filepath.Join(c.cache.dir, "uploads", keyName(b.location(), b.repository(), fileKey(f.Source, f.Info))+".json")
	h := sha256.New()
	var hashed, off int64
	var up upload
	res := blobResult{Status: StatusUploaded}

	var st uploadState
	if err := c.cache.readJSON(statePath, &st); err == nil && st.Size == size && st.Location != "" {
		u, committed, err := b.resumeUpload(ctx, st.Location)
		switch {
		case err == nil && committed <= size:
			if unmarshalHash(h, st.Hash) {
				hashed = st.Offset
			} else {
				h.Reset()
			}
			up, off = u, committed
			if off > 0 {
				res.Status, res.ResumedFrom = StatusResumed, off
			}
		case err != nil && !isUploadGone(err):
			return blobResult{}, err
		}
	}
	save := func() {
		_ = c.cache.writeJSON(statePath, uploadState{Location: up.id(), Size: size, Offset: hashed, Hash: marshalHash(h)})
	}
	if up == nil {
		os.Remove(statePath)
		if err := retry(ctx, func() (err error) { up, err = b.startUpload(ctx); return err }); err != nil {
			return blobResult{}, err
		}
		// Saved before the first byte goes out: a push killed during its
		// first (on loopback, only) append still finds the session, and
		// the backend's committed offset, when it is run again.
		save()
	}
	prog.set(off)
	// A digest from the digest cache is not computed again: the file goes
	// out unread by us (sendfile), and the backend, which hashes what it
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
		n := min(up.chunkSize(), size-off)
		committed, err := up.append(ctx, chunk{file: file, off: off, n: n, h: sendHash, prog: prog})
		if err == nil {
			res.Sent += n
			if !known {
				hashed = off + n
			}
			off = committed
			if hashed == off || known {
				save()
			}
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return blobResult{}, ctx.Err()
		}
		if errors.Is(err, errChunksRefused) && off == 0 {
			return c.pushWhole(ctx, b, f, file, prog)
		}
		attempt++
		if attempt >= maxAttempts || (!isTransient(err) && !isUploadGone(err)) {
			return blobResult{}, fmt.Errorf("upload %s: %w", f.Path, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return blobResult{}, err
		}
		// The chunk may have partly arrived: restore the hash to where it
		// was before the chunk and ask the backend where it stands.
		if !known {
			unmarshalHash(h, checkpoint)
			hashed = off
		}
		committed, serr := up.status(ctx)
		if serr != nil {
			if !isUploadGone(serr) {
				continue
			}
			// The session is lost: start over (only the bytes, not the hash
			// of what is still to send, are lost).
			if up, err = b.startUpload(ctx); err != nil {
				return blobResult{}, err
			}
			h.Reset()
			hashed, committed = 0, 0
			save()
		}
		off = committed
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
	if err := up.commit(ctx, d, nil, 0); err != nil {
		if known && isDigestRefused(err) {
			// The file is not what the digest cache says: forget that,
			// and send it again, hashed this time.
			c.cache.ForgetDigest(f.Source, f.Info)
			os.Remove(statePath)
			f.Digest = ""
			prog.set(0)
			again, err := c.pushBlob(ctx, b, f, prog)
			again.Sent += res.Sent
			return again, err
		}
		return blobResult{}, fmt.Errorf("upload %s: commit %s: %w", f.Path, d, err)
	}
	os.Remove(statePath)
	c.pushed(b, f, d)
	res.Digest = d
	prog.done()
	return res, nil
}

// pushWhole is for backends that refuse chunks: the file is hashed first
// (the one request needs the digest up front), then sent whole.
func (c *Client) pushWhole(ctx context.Context, b backend, f *localFile, file *os.File, prog *fileProgress) (blobResult, error) {
	d := f.Digest
	if d == "" {
		h := sha256.New()
		var hashed int64
		if err := catchUp(ctx, file, h, &hashed, f.Info.Size()); err != nil {
			return blobResult{}, err
		}
		d = digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	}
	up, err := b.startUpload(ctx)
	if err != nil {
		return blobResult{}, err
	}
	prog.set(0)
	h := sha256.New()
	body := chunk{file: file, off: 0, n: f.Info.Size(), h: h, prog: prog}.reader()
	if err := up.commit(ctx, d, body, f.Info.Size()); err != nil {
		return blobResult{}, fmt.Errorf("upload %s (one request, the registry refused chunks): %w", f.Path, err)
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)); got != d {
		return blobResult{}, fmt.Errorf("upload %s: %w", f.Path, &DigestError{What: f.Source + " changed while it was sent", Got: got.String(), Want: d.String()})
	}
	c.pushed(b, f, d)
	prog.done()
	return blobResult{Digest: d, Status: StatusUploaded, Sent: f.Info.Size()}, nil
}

// pushed records what a push learned: the file's digest, and where the
// blob now is (a later push to another repository mounts it).
func (c *Client) pushed(b backend, f *localFile, d digest.Digest) {
	_ = c.cache.StoreDigest(f.Source, f.Info, d)
	c.cache.AddLocation(d, b.location(), b.repository())
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
