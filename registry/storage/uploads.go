package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/keylock"
)

// An upload session lives in the store, not in memory: its data is a
// resumable driver write and its state (committed offset and the running
// sha256 state) is a small object rewritten after every chunk. Any process
// serving the same store can continue it, also after a crash.

// UploadInfo describes an upload session.
type UploadInfo struct {
	ID      string
	Name    string
	Offset  int64
	Started time.Time
	Updated time.Time
}

type uploadState struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Offset    int64     `json:"offset"`
	HashState []byte    `json:"sha256State"`
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
}

func (u *uploadState) info() UploadInfo {
	return UploadInfo{ID: u.ID, Name: u.Name, Offset: u.Offset, Started: u.Started, Updated: u.Updated}
}

// uploadLocks serializes requests on one session within this process;
// clients upload a session's chunks in order, so this is not a bottleneck.
// An entry lives only while a request holds or waits for it: ids that
// clients make up must not accumulate in memory.
var uploadLocks keylock.Map

// lockUpload validates id, then waits for the session's lock (or for ctx).
func lockUpload(ctx context.Context, id string) (func(), error) {
	if !validUploadID(id) {
		return nil, fmt.Errorf("%w: %.64q", ErrUploadUnknown, id)
	}
	unlock, err := uploadLocks.Lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	return unlock, nil
}

func newUploadID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

func statePath(name, id string) string { return uploadPath(name, id) + "/state" }
func dataPath(name, id string) string  { return uploadPath(name, id) + "/data" }

// StartUpload opens an upload session in repository name.
func (s *Store) StartUpload(ctx context.Context, name string) (UploadInfo, error) {
	h := sha256.New()
	hs, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return UploadInfo{}, err
	}
	now := time.Now().UTC()
	st := &uploadState{ID: newUploadID(), Name: name, HashState: hs, Started: now, Updated: now}
	if err := s.saveUpload(ctx, st); err != nil {
		return UploadInfo{}, fmt.Errorf("start upload in %s: %w", name, err)
	}
	return st.info(), nil
}

func (s *Store) loadUpload(ctx context.Context, name, id string) (*uploadState, error) {
	if !validUploadID(id) {
		return nil, fmt.Errorf("%w: %.64q", ErrUploadUnknown, id)
	}
	var st uploadState
	if err := s.getJSON(ctx, statePath(name, id), &st); err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
		}
		return nil, err
	}
	if st.ID != id || st.Name != name {
		return nil, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	return &st, nil
}

func (s *Store) saveUpload(ctx context.Context, st *uploadState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.d.PutContent(ctx, statePath(st.Name, st.ID), b)
}

// UploadStatus reports the committed offset of a session.
func (s *Store) UploadStatus(ctx context.Context, name, id string) (UploadInfo, error) {
	st, err := s.loadUpload(ctx, name, id)
	if err != nil {
		return UploadInfo{}, err
	}
	return st.info(), nil
}

// AppendUpload appends r to a session. start is the offset the client says
// the chunk begins at (-1: none given); length is the chunk's declared
// length (-1: unknown). Whatever arrives before a failure (a client that
// disconnects) is kept and counted, so the client can resume from the
// offset the status request reports.
func (s *Store) AppendUpload(ctx context.Context, name, id string, start, length int64, r io.Reader) (UploadInfo, error) {
	unlock, err := lockUpload(ctx, id)
	if err != nil {
		return UploadInfo{}, err
	}
	defer unlock()
	st, err := s.loadUpload(ctx, name, id)
	if err != nil {
		return UploadInfo{}, err
	}
	if err := s.appendLocked(ctx, st, start, length, r); err != nil {
		return st.info(), err
	}
	return st.info(), nil
}

// appendLocked writes r at the session's offset, then records the new offset
// and hash state. The data is made durable before the state that counts it.
func (s *Store) appendLocked(ctx context.Context, st *uploadState, start, length int64, r io.Reader) error {
	if start >= 0 && start != st.Offset {
		return fmt.Errorf("%w: chunk starts at %d, upload is at %d", ErrUploadOffset, start, st.Offset)
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.HashState); err != nil {
		return fmt.Errorf("upload %s: corrupt hash state: %w", st.ID, err)
	}
	var total int64
	for {
		w, err := s.d.Writer(ctx, dataPath(st.Name, st.ID), st.Offset)
		if err != nil {
			return s.lostUpload(ctx, st, fmt.Errorf("upload %s: resume at %d: %w", st.ID, st.Offset, err))
		}
		n, copyErr := copyHashed(w, h, io.LimitReader(r, s.checkpointBytes()), w.Size())
		total += n
		if closeErr := w.Close(); closeErr != nil {
			return fmt.Errorf("upload %s: %w", st.ID, closeErr)
		}
		if n > 0 {
			hs, err := h.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				return err
			}
			st.Offset, st.HashState, st.Updated = w.Size(), hs, time.Now().UTC()
			if err := s.saveUpload(context.WithoutCancel(ctx), st); err != nil {
				return fmt.Errorf("upload %s: save state: %w", st.ID, err)
			}
		}
		if copyErr != nil {
			return fmt.Errorf("upload %s: %w", st.ID, copyErr)
		}
		// A full checkpoint's worth arrived: what came so far is durable
		// and counted, so a crash now loses at most one checkpoint. Go on.
		if n == s.checkpointBytes() {
			continue
		}
		break
	}
	if length >= 0 && total != length {
		return fmt.Errorf("%w: chunk declared %d bytes, got %d", ErrSizeInvalid, length, total)
	}
	return nil
}

// CompleteUpload appends the final chunk (body may be nil), verifies the
// content against want and moves it to its content address, linked into the
// repository. A digest mismatch ends the session.
func (s *Store) CompleteUpload(ctx context.Context, name, id string, want digest.Digest, start int64, body io.Reader) (BlobInfo, error) {
	unlock, err := lockUpload(ctx, id)
	if err != nil {
		return BlobInfo{}, err
	}
	defer unlock()
	st, err := s.loadUpload(ctx, name, id)
	if err != nil {
		return BlobInfo{}, err
	}
	if sp, ok := s.d.(StreamPutter); ok && body != nil && st.Offset == 0 && start <= 0 && want.Algorithm() == digest.SHA256 {
		return s.streamUpload(ctx, sp, st, want, body)
	}
	if body != nil {
		if err := s.appendLocked(ctx, st, start, -1, body); err != nil {
			return BlobInfo{}, err
		}
	}
	if want.Algorithm() == digest.SHA256 {
		// The session's bytes are the blob, and the blob is stored: by
		// another upload, or by this one, whose completion a crash cut off
		// after the blob was in place but before the session was removed
		// (its data then is gone: resuming it would fail). Link it.
		if got, err := s.uploadDigest(ctx, st, digest.SHA256); err == nil && got == want {
			if _, err := s.statBlobData(ctx, want); err == nil {
				if err := s.d.PutContent(ctx, layerLinkPath(name, want), []byte(want)); err != nil {
					return BlobInfo{}, err
				}
				if err := s.removeUpload(ctx, st); err != nil {
					return BlobInfo{}, err
				}
				return BlobInfo{Digest: want, Size: st.Offset}, nil
			}
		}
	}
	w, err := s.d.Writer(ctx, dataPath(name, id), st.Offset)
	if err != nil {
		return BlobInfo{}, s.lostUpload(ctx, st, fmt.Errorf("upload %s: %w", id, err))
	}
	if err := w.Commit(ctx); err != nil {
		return BlobInfo{}, fmt.Errorf("upload %s: commit: %w", id, err)
	}
	got, err := s.uploadDigest(ctx, st, want.Algorithm())
	if err != nil {
		return BlobInfo{}, err
	}
	if want != "" && got != want {
		_ = s.removeUpload(context.WithoutCancel(ctx), st)
		return BlobInfo{}, fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, want)
	}
	if _, err := s.statBlobData(ctx, got); err == nil {
		// Already stored (pushed before, or by another repository).
		if err := s.d.Delete(ctx, dataPath(name, id)); err != nil {
			return BlobInfo{}, err
		}
	} else if err := s.d.Move(ctx, dataPath(name, id), blobDataPath(got)); err != nil {
		return BlobInfo{}, fmt.Errorf("upload %s: store blob %s: %w", id, got, err)
	}
	if err := s.d.PutContent(ctx, layerLinkPath(name, got), []byte(got)); err != nil {
		return BlobInfo{}, err
	}
	if err := s.removeUpload(ctx, st); err != nil {
		return BlobInfo{}, err
	}
	return BlobInfo{Digest: got, Size: st.Offset}, nil
}

// removeUpload removes a session: its state first, so that a crash part-way
// leaves no session counting bytes that are gone (only data for the purge
// of abandoned sessions), then everything else it stored.
func (s *Store) removeUpload(ctx context.Context, st *uploadState) error {
	if err := ignoreNotFound(s.d.Delete(ctx, statePath(st.Name, st.ID))); err != nil {
		return err
	}
	return ignoreNotFound(s.d.Delete(ctx, uploadPath(st.Name, st.ID)))
}

// streamUpload stores a whole blob that arrives in one request, its digest
// known beforehand, straight at its content address: on S3 this saves the
// server-side copy of every byte that moving a finished session costs. The
// bytes are verified as they stream; a mismatch fails the reader, so the
// driver stores nothing. A request cut short keeps nothing either, which a
// client sending the whole blob at once restarts anyway.
func (s *Store) streamUpload(ctx context.Context, sp StreamPutter, st *uploadState, want digest.Digest, body io.Reader) (BlobInfo, error) {
	vr := &verifyingReader{r: body, h: sha256.New(), want: want}
	n, err := sp.PutStream(ctx, blobDataPath(want), vr)
	if err != nil {
		if vr.mismatch != nil {
			_ = s.removeUpload(context.WithoutCancel(ctx), st)
			return BlobInfo{}, vr.mismatch
		}
		return BlobInfo{}, fmt.Errorf("upload %s: %w", st.ID, err)
	}
	if err := s.d.PutContent(ctx, layerLinkPath(st.Name, want), []byte(want)); err != nil {
		return BlobInfo{}, err
	}
	if err := s.removeUpload(ctx, st); err != nil {
		return BlobInfo{}, err
	}
	return BlobInfo{Digest: want, Size: n}, nil
}

// verifyingReader hashes what it reads and, at the end, turns io.EOF into a
// digest-mismatch error when the content is not what was announced, so a
// store that keeps only what ended with io.EOF keeps nothing.
type verifyingReader struct {
	r        io.Reader
	h        hash.Hash
	want     digest.Digest
	mismatch error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digest.NewDigest(digest.SHA256, v.h); got != v.want {
			v.mismatch = fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, v.want)
			return n, v.mismatch
		}
	}
	return n, err
}

// uploadDigest returns the digest of the committed session data: sha256
// from the running state, other algorithms by reading the data once more.
func (s *Store) uploadDigest(ctx context.Context, st *uploadState, alg digest.Algorithm) (digest.Digest, error) {
	if alg == "" || alg == digest.SHA256 {
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.HashState); err != nil {
			return "", fmt.Errorf("upload %s: corrupt hash state: %w", st.ID, err)
		}
		return digest.NewDigest(digest.SHA256, h), nil
	}
	var h hash.Hash
	switch alg {
	case digest.SHA512:
		h = sha512.New()
	default:
		return "", fmt.Errorf("%w: unsupported algorithm %s", ErrDigestInvalid, alg)
	}
	r, err := s.d.Reader(ctx, dataPath(st.Name, st.ID), 0)
	if err != nil {
		return "", err
	}
	defer r.Close()
	bp := smallBuffers.Get().(*[]byte)
	defer smallBuffers.Put(bp)
	if _, err := io.CopyBuffer(h, r, *bp); err != nil {
		return "", fmt.Errorf("upload %s: hash: %w", st.ID, err)
	}
	return digest.NewDigest(alg, h), nil
}

// CancelUpload ends a session and removes everything it stored.
// lostUpload handles a session whose recorded offset the driver can no
// longer resume (its bytes are not all durable: a crash at the wrong moment,
// state removed behind its back). Answering that with a server error would
// have the client resume the same session again and again; the session is
// dropped instead and reported unknown, so the client starts a new one.
func (s *Store) lostUpload(ctx context.Context, st *uploadState, err error) error {
	var oe *InvalidOffsetError
	if !errors.As(err, &oe) {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	if w, werr := s.d.Writer(ctx, dataPath(st.Name, st.ID), 0); werr == nil {
		_ = w.Cancel(ctx)
	}
	if derr := s.removeUpload(ctx, st); derr != nil {
		return errors.Join(err, derr)
	}
	return fmt.Errorf("%w: %w; the session is dropped: start the upload again", ErrUploadUnknown, err)
}

func (s *Store) CancelUpload(ctx context.Context, name, id string) error {
	unlock, err := lockUpload(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.loadUpload(ctx, name, id)
	if err != nil {
		return err
	}
	if w, err := s.d.Writer(ctx, dataPath(name, id), 0); err == nil {
		_ = w.Cancel(ctx)
	}
	return s.removeUpload(ctx, st)
}

// PurgeUploads cancels sessions not touched for longer than maxAge, in every
// repository, and returns how many it removed.
func (s *Store) PurgeUploads(ctx context.Context, maxAge time.Duration) (int, error) {
	repos, err := s.Catalog(ctx, -1, "")
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-maxAge)
	purged := 0
	var errs []error
	for _, name := range repos {
		ids, err := s.d.List(ctx, uploadsPath(name))
		if err != nil {
			if !IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		for _, id := range ids {
			st, err := s.loadUpload(ctx, name, id)
			if err != nil {
				if errors.Is(err, ErrUploadUnknown) {
					// A session directory without state: its start was
					// interrupted. Age it by the directory itself.
					if fi, serr := s.d.Stat(ctx, uploadPath(name, id)); serr == nil && fi.ModTime.Before(cutoff) {
						_ = s.d.Delete(ctx, uploadPath(name, id))
					}
					continue
				}
				errs = append(errs, err)
				continue
			}
			if st.Updated.Before(cutoff) {
				if err := s.CancelUpload(ctx, name, id); err != nil {
					errs = append(errs, err)
					continue
				}
				purged++
			}
		}
	}
	return purged, errors.Join(errs...)
}
