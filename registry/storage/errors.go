package storage

import "errors"

// Errors of the layout, matched with errors.Is; the registry maps each to an
// OCI error code.
var (
	ErrNameInvalid       = errors.New("invalid repository name")
	ErrNameUnknown       = errors.New("repository name not known to registry")
	ErrTagInvalid        = errors.New("invalid tag")
	ErrDigestInvalid     = errors.New("invalid digest")
	ErrBlobUnknown       = errors.New("blob unknown to registry")
	ErrManifestUnknown   = errors.New("manifest unknown to registry")
	ErrManifestInvalid   = errors.New("manifest invalid")
	ErrManifestBlob      = errors.New("manifest references a blob unknown to the repository")
	ErrManifestTooLarge  = errors.New("manifest too large")
	ErrUploadUnknown     = errors.New("blob upload unknown to registry")
	ErrUploadOffset      = errors.New("blob upload range out of order")
	ErrSizeInvalid       = errors.New("content length does not match")
	ErrDigestMismatch    = errors.New("provided digest did not match uploaded content")
	ErrUploadInvalidBody = errors.New("blob upload invalid")
)
