package registry

import (
	"encoding/json"
	"errors"
	"net/http"
	"syscall"

	"github.com/modelctl/modelctl/registry/storage"
)

// apiError is one entry of the spec's error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// Error codes of the distribution spec.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
	codeRangeInvalid        = "RANGE_INVALID"
	codeTagInvalid          = "TAG_INVALID"
)

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Errors []apiError `json:"errors"`
	}{[]apiError{{Code: code, Message: msg}}})
}

// storageError answers a request that failed in the store, mapping the
// layout's errors to the spec's codes. Anything unexpected is a 500 and is
// logged; its text (paths, driver details) is not sent to the client.
func (s *Server) storageError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *storage.TooLargeError
	switch {
	case errors.Is(err, storage.ErrNameInvalid):
		writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error())
	case errors.Is(err, storage.ErrNameUnknown):
		writeError(w, http.StatusNotFound, codeNameUnknown, err.Error())
	case errors.Is(err, storage.ErrTagInvalid):
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
	case errors.Is(err, storage.ErrDigestInvalid), errors.Is(err, storage.ErrDigestMismatch):
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
	case errors.Is(err, storage.ErrBlobUnknown):
		writeError(w, http.StatusNotFound, codeBlobUnknown, err.Error())
	case errors.Is(err, storage.ErrManifestUnknown):
		writeError(w, http.StatusNotFound, codeManifestUnknown, err.Error())
	case errors.Is(err, storage.ErrManifestBlob):
		writeError(w, http.StatusBadRequest, codeManifestBlobUnknown, err.Error())
	case errors.Is(err, storage.ErrManifestTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, err.Error())
	case errors.Is(err, storage.ErrManifestInvalid):
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
	case errors.Is(err, storage.ErrUploadUnknown):
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, err.Error())
	case errors.Is(err, storage.ErrUploadOffset):
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, err.Error())
	case errors.Is(err, storage.ErrSizeInvalid):
		writeError(w, http.StatusBadRequest, codeSizeInvalid, err.Error())
	case errors.Is(err, storage.ErrPreconditionFailed):
		writeError(w, http.StatusConflict, codeDenied, err.Error())
	case errors.Is(err, errBodyTimeout):
		s.log.WarnContext(r.Context(), "request body cut off", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusRequestTimeout, codeBlobUploadInvalid, "the request body stalled or arrived too slowly; what was committed is kept")
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, "content too large")
	case errors.Is(err, syscall.ENOSPC) || isQuotaError(err):
		// Say so: a client can do nothing but report it, and an operator
		// reading the client's error should not have to dig in logs.
		s.log.ErrorContext(r.Context(), "storage full", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInsufficientStorage, "UNKNOWN", "the registry's storage is full; the upload keeps what was committed and can resume once space is freed")
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal storage error")
	}
}
