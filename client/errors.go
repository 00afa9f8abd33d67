package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// Sentinel errors, wrapped by the errors the client returns so that callers
// (and exit codes) can branch with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrUnauthorized   = errors.New("authentication required")
	ErrDenied         = errors.New("access denied")
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrUnreachable    = errors.New("registry unreachable")
	ErrDiskFull       = errors.New("disk full")
)

// HTTPError is a registry's error response.
type HTTPError struct {
	Method string
	URL    string
	Status int
	// Code and Message come from the OCI error body, when there is one.
	Code    string
	Message string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("%s %s: %s", e.Method, e.URL, http.StatusText(e.Status))
	if e.Status == 0 {
		s = fmt.Sprintf("%s %s", e.Method, e.URL)
	}
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is maps HTTP statuses onto the sentinels.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrDenied:
		return e.Status == http.StatusForbidden
	case ErrDiskFull:
		return e.Status == http.StatusInsufficientStorage
	}
	return false
}

// readHTTPError turns a non-success response into an *HTTPError, reading at
// most 64 KiB of the body.
func readHTTPError(resp *http.Response) error {
	defer resp.Body.Close()
	e := &HTTPError{Method: resp.Request.Method, URL: redactURL(resp.Request.URL.String()), Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		e.Code, e.Message = oci.Errors[0].Code, oci.Errors[0].Message
	}
	return e
}

// redactURL drops the query, where upload URLs carry state tokens.
func redactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// DigestError reports content that does not match its descriptor.
type DigestError struct {
	What      string
	Got, Want string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("%s: digest mismatch: got %s, want %s", e.What, e.Got, e.Want)
}

func (e *DigestError) Is(target error) bool { return target == ErrDigestMismatch }

// Explain rewrites err into one line a user can act on: what failed, why,
// and the fix when there is one. The original error stays wrapped.
func Explain(err error, host string) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: cannot connect to %s: connection refused (is the registry running there? check host and port): %w", ErrUnreachable, host, err)
	case isTLSOverHTTP(err):
		return fmt.Errorf("%w: %s does not speak HTTPS (use --plain-http for a plain-HTTP registry): %w", ErrUnreachable, host, err)
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%w by %s and no credentials are stored: run `modelctl login %s -u USER --password-stdin`: %w", ErrUnauthorized, host, host, err)
	case errors.Is(err, ErrUnauthorized):
		return fmt.Errorf("authentication required by %s: run `modelctl login %s -u USER --password-stdin`: %w", host, host, err)
	case errors.Is(err, ErrDenied):
		return fmt.Errorf("access denied by %s (the credentials lack permission for this repository): %w", host, err)
	case errors.Is(err, ErrDiskFull) && !errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("the registry %s is out of disk space (free space there, then run the push again: it continues from what the registry kept): %w", host, err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: no space left on device (free space or set --cache-dir / the target elsewhere): %w", ErrDiskFull, err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return fmt.Errorf("%w: cannot resolve %s (check the registry name): %w", ErrUnreachable, host, err)
	}
	return err
}

func isTLSOverHTTP(err error) bool {
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// RedactURL drops the query of a URL, where upload sessions carry state
// tokens, for display.
func RedactURL(u string) string { return redactURL(u) }
