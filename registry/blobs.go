package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	dgst, err := storage.ParseDigest(m[2])
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	ctx := r.Context()
	info, err := s.store.StatBlob(ctx, name, dgst)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", string(dgst))
	h.Set("ETag", `"`+string(dgst)+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "max-age=31536000")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	if s.cfg.Redirect {
		if rd, ok := s.store.Driver().(storage.Redirector); ok {
			u, err := rd.RedirectURL(ctx, storage.BlobPath(dgst), 20*time.Minute)
			if err == nil {
				http.Redirect(w, r, u, http.StatusTemporaryRedirect)
				return
			}
			s.log.Warn("redirect failed; streaming instead", "digest", dgst, "err", err)
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, string(dgst)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	offset, length := int64(0), info.Size
	status := http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" && ifRangeHolds(r, dgst) {
		off, n, ok, satisfiable := parseRange(rh, info.Size)
		switch {
		case !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
			writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, "requested range not satisfiable")
			return
		case ok:
			offset, length, status = off, n, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, info.Size))
		}
	}
	// Every driver opens a reader at an offset, so every driver's blobs are
	// served through the one range parser above and answer alike.
	rc, _, err := s.store.OpenBlob(ctx, name, dgst, offset)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	defer rc.Close()
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	// A local file under the LimitReader lets net/http use sendfile.
	if _, err := io.Copy(w, io.LimitReader(rc, length)); err != nil {
		s.log.Warn("blob download interrupted", "digest", dgst, "err", err)
	}
}

// ifRangeHolds reports whether a Range header applies: without If-Range,
// or with an If-Range naming this blob's ETag. A stale If-Range gets the
// whole blob (RFC 9110 13.1.5).
func ifRangeHolds(r *http.Request, dgst digest.Digest) bool {
	ir := r.Header.Get("If-Range")
	return ir == "" || strings.Trim(ir, `"`) == string(dgst)
}

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, m []string) {
	dgst, err := storage.ParseDigest(m[2])
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	if err := s.store.DeleteBlob(r.Context(), m[1], dgst); err != nil {
		s.storageError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func uploadLocation(name, id string) string { return "/v2/" + name + "/blobs/uploads/" + id }

func blobLocation(name string, d digest.Digest) string { return "/v2/" + name + "/blobs/" + string(d) }

// uploadRange is the Range header of an upload: the inclusive byte range
// committed so far. An empty upload reports "0-0", as distribution does and
// clients expect.
func uploadRange(offset int64) string {
	if offset == 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", offset-1)
}

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		if s.tryMount(w, r, name, mount, q.Get("from")) {
			return
		}
	}
	if dg := q.Get("digest"); dg != "" {
		// Monolithic upload: the whole blob in this request.
		want, err := storage.ParseDigest(dg)
		if err != nil {
			s.storageError(w, r, err)
			return
		}
		s.metrics.uploadsInProgress.Add(1)
		defer s.metrics.uploadsInProgress.Add(-1)
		info, err := s.store.PutBlob(ctx, name, want, r.Body)
		if err != nil {
			s.storageError(w, r, err)
			return
		}
		s.metrics.blobsUploaded.Add(1)
		w.Header().Set("Location", blobLocation(name, info.Digest))
		w.Header().Set("Docker-Content-Digest", string(info.Digest))
		w.WriteHeader(http.StatusCreated)
		return
	}
	u, err := s.store.StartUpload(ctx, name)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	setUploadHeaders(w, name, u.ID, 0)
	w.WriteHeader(http.StatusAccepted)
}

// setUploadHeaders describes an upload session in progress: where to send
// the next chunk and what is committed.
func setUploadHeaders(w http.ResponseWriter, name, id string, offset int64) {
	h := w.Header()
	h.Set("Location", uploadLocation(name, id))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", uploadRange(offset))
	h.Set("Content-Length", "0")
}

// tryMount links a blob from another repository (or, with no source, any
// blob the registry holds) and answers 201; it returns false to fall back
// to a normal upload.
func (s *Server) tryMount(w http.ResponseWriter, r *http.Request, name, mount, from string) bool {
	dgst, err := storage.ParseDigest(mount)
	if err != nil {
		return false
	}
	ctx := r.Context()
	if from != "" {
		if storage.ValidateName(from) != nil {
			return false
		}
		if s.auth != nil {
			// Mounting reads the source repository: the caller must be
			// allowed to pull it. A refusal falls back to an upload.
			if _, ok := s.auth.Authorize(discardHeaders{}, r, from, "pull"); !ok {
				return false
			}
		}
		if _, err := s.store.StatBlob(ctx, from, dgst); err != nil {
			return false
		}
	} else if s.auth != nil {
		// Without a source the blob may come from any repository: only a
		// caller allowed to pull every repository (a registry-wide "pull")
		// may mount it, so other repositories' content is not revealed.
		if _, ok := s.auth.Authorize(discardHeaders{}, r, "", "pull"); !ok {
			return false
		}
	}
	if err := s.store.LinkBlob(ctx, name, dgst); err != nil {
		if !errors.Is(err, storage.ErrBlobUnknown) {
			s.log.Warn("mount failed", "digest", dgst, "err", err)
		}
		return false
	}
	w.Header().Set("Location", blobLocation(name, dgst))
	w.Header().Set("Docker-Content-Digest", string(dgst))
	w.WriteHeader(http.StatusCreated)
	return true
}

// discardHeaders is a ResponseWriter for authorization checks whose refusal
// must not reach the client.
type discardHeaders struct{}

func (discardHeaders) Header() http.Header         { return http.Header{} }
func (discardHeaders) Write(b []byte) (int, error) { return len(b), nil }
func (discardHeaders) WriteHeader(int)             {}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, m []string) {
	name, id := m[1], m[2]
	u, err := s.store.UploadStatus(r.Context(), name, id)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	setUploadHeaders(w, name, id, u.Offset)
	w.WriteHeader(http.StatusNoContent)
}

// chunkBounds reads a chunk's declared start and length from Content-Range
// and Content-Length (-1 where absent), refusing inconsistent headers.
func chunkBounds(r *http.Request) (start, length int64, err error) {
	start, length = -1, r.ContentLength
	if cr := r.Header.Get("Content-Range"); cr != "" {
		a, b, err := parseContentRange(cr)
		if err != nil {
			return 0, 0, err
		}
		if length >= 0 && b-a+1 != length {
			return 0, 0, fmt.Errorf("Content-Range %s does not match Content-Length %d", cr, length)
		}
		start, length = a, b-a+1
	}
	return start, length, nil
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, m []string) {
	name, id := m[1], m[2]
	start, length, err := chunkBounds(r)
	if err != nil {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, err.Error())
		return
	}
	s.metrics.uploadsInProgress.Add(1)
	defer s.metrics.uploadsInProgress.Add(-1)
	u, err := s.store.AppendUpload(r.Context(), name, id, start, length, r.Body)
	if err != nil {
		if errors.Is(err, storage.ErrUploadOffset) {
			w.Header().Set("Location", uploadLocation(name, id))
			w.Header().Set("Range", uploadRange(u.Offset))
		}
		s.storageError(w, r, err)
		return
	}
	setUploadHeaders(w, name, id, u.Offset)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, m []string) {
	name, id := m[1], m[2]
	dg := r.URL.Query().Get("digest")
	if dg == "" {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "the digest query parameter is required to complete an upload")
		return
	}
	want, err := storage.ParseDigest(dg)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	start, _, err := chunkBounds(r)
	if err != nil {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, err.Error())
		return
	}
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	s.metrics.uploadsInProgress.Add(1)
	defer s.metrics.uploadsInProgress.Add(-1)
	info, err := s.store.CompleteUpload(r.Context(), name, id, want, start, body)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	s.metrics.blobsUploaded.Add(1)
	w.Header().Set("Location", blobLocation(name, info.Digest))
	w.Header().Set("Docker-Content-Digest", string(info.Digest))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, m []string) {
	if err := s.store.CancelUpload(r.Context(), m[1], m[2]); err != nil {
		s.storageError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
