package registry

import (
	"github.com/modelctl/modelctl/registry/api"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/registry/storage"
)

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, m []string) {
	name, ref := m[1], m[2]
	info, body, err := s.store.GetManifest(r.Context(), name, ref)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", info.MediaType)
	h.Set("Docker-Content-Digest", string(info.Digest))
	h.Set("ETag", `"`+string(info.Digest)+`"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, string(info.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// MaxTagParameters bounds the tag parameters of one manifest PUT: each is a
// tag write and a history record, and without a bound their number was
// limited only by the URL's length (tens of thousands).
const MaxTagParameters = 64

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, m []string) {
	name, ref := m[1], m[2]
	if n := len(r.URL.Query()["tag"]); n > MaxTagParameters {
		writeError(w, http.StatusBadRequest, codeTagInvalid, fmt.Sprintf("%d tag parameters; at most %d per request", n, MaxTagParameters))
		return
	}
	limit := s.store.MaxManifestSize
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest of %d bytes is over the %d-byte limit", r.ContentLength, limit))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading manifest: "+err.Error())
		return
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest is over the %d-byte limit", limit))
		return
	}
	info, err := s.store.PutManifest(r.Context(), storage.PutManifestRequest{
		Name:        name,
		Reference:   ref,
		Tags:        r.URL.Query()["tag"],
		ContentType: r.Header.Get("Content-Type"),
		Body:        body,
		User:        userOf(r),
	})
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+string(info.Digest))
	h.Set("Docker-Content-Digest", string(info.Digest))
	if info.Subject != "" {
		h.Set("OCI-Subject", string(info.Subject))
	}
	for _, t := range r.URL.Query()["tag"] {
		h.Add("OCI-Tag", t)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) deleteManifest(w http.ResponseWriter, r *http.Request, m []string) {
	name, ref := m[1], m[2]
	var err error
	if strings.Contains(ref, ":") {
		var d digest.Digest
		if d, err = storage.ParseDigest(ref); err == nil {
			err = s.store.DeleteManifest(r.Context(), name, d, userOf(r))
		}
	} else if err = storage.ValidateTag(ref); err == nil {
		err = s.store.DeleteTag(r.Context(), name, ref, userOf(r))
	}
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// pageParams reads the n and last query parameters of a paginated list;
// n is -1 when absent.
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if v := q.Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", fmt.Errorf("invalid n %q", v)
		}
	}
	return n, q.Get("last"), nil
}

// setNextLink adds the Link header of the next page when a page was full.
func setNextLink(w http.ResponseWriter, r *http.Request, page []string, n int) {
	if n <= 0 || len(page) < n {
		return
	}
	q := url.Values{}
	q.Set("n", strconv.Itoa(n))
	q.Set("last", page[len(page)-1])
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
}

// paginated answers a list request with n/last pagination: list is asked
// for one more entry than a page holds, to know whether a Link to the next
// page is due.
func (s *Server) paginated(w http.ResponseWriter, r *http.Request, list func(n int, last string) ([]string, error), body func([]string) any) {
	n, last, err := pageParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	}
	limit := n
	if n > 0 {
		limit = n + 1
	}
	items, err := list(limit, last)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	if n >= 0 && len(items) > n {
		items = items[:n]
		setNextLink(w, r, items, n)
	}
	writeJSON(w, http.StatusOK, "application/json", body(items))
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	s.paginated(w, r, func(n int, last string) ([]string, error) {
		return s.store.Tags(r.Context(), name, n, last)
	}, func(tags []string) any {
		return struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{name, tags}
	})
}

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "only GET is supported on the catalog")
		return
	}
	s.paginated(w, r, func(n int, last string) ([]string, error) {
		return s.store.Catalog(r.Context(), n, last)
	}, func(repos []string) any {
		return struct {
			Repositories []string `json:"repositories"`
		}{repos}
	})
}

func (s *Server) getReferrers(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	subject, err := storage.ParseDigest(m[2])
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	artifactType := r.URL.Query().Get("artifactType")
	refs, err := s.store.Referrers(r.Context(), name, subject, artifactType)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: refs}
	idx.SchemaVersion = 2
	writeJSON(w, http.StatusOK, v1.MediaTypeImageIndex, idx)
}

func (s *Server) getTagHistory(w http.ResponseWriter, r *http.Request, m []string) {
	moves, err := s.store.TagHistory(r.Context(), m[1], m[2])
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, "application/json", api.TagHistory{Name: m[1], Tag: m[2], History: moves})
}

func (s *Server) moveTag(w http.ResponseWriter, r *http.Request, m []string) {
	name, tag := m[1], m[2]
	var req api.TagMoveRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, "body must be JSON {\"digest\": ..., \"from\": ...}: "+err.Error())
		return
	}
	to, err := storage.ParseDigest(string(req.Digest))
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	if req.From != "" {
		if _, err := storage.ParseDigest(string(req.From)); err != nil {
			s.storageError(w, r, err)
			return
		}
	}
	if _, err := s.store.ResolveManifest(r.Context(), name, string(to)); err != nil {
		s.storageError(w, r, err)
		return
	}
	prev, err := s.store.MoveTag(r.Context(), name, tag, to, req.From, userOf(r))
	if err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) {
			writeError(w, http.StatusPreconditionFailed, codeDenied, err.Error())
			return
		}
		s.storageError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, "application/json", api.TagMoveResponse{Tag: tag, From: prev, To: to})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
