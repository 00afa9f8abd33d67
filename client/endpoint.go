package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	digest "github.com/opencontainers/go-digest"
)

// Endpoint is authenticated access to one repository of a registry, with
// the client's transport, credentials and token cache: for packages that
// speak endpoints of those registries other than push and pull (tags).
type Endpoint struct {
	r *repo
}

// Endpoint returns access to ref's repository; push asks the token service
// for push scope too. The returned context carries the scope.
func (c *Client) Endpoint(ctx context.Context, ref Reference, push bool) (*Endpoint, context.Context, error) {
	if ref.S3 {
		return nil, ctx, fmt.Errorf("%s: an s3:// target has no registry endpoints", ref)
	}
	r, ctx := c.repo(ctx, ref.Registry, ref.Repository, push)
	return &Endpoint{r: r}, ctx, nil
}

// Do sends method to path (from /v2/ on) with body and header, and returns
// the response to a 2xx status; any other status is an *HTTPError, with
// the hints of Explain.
func (e *Endpoint) Do(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := e.r.newRequest(ctx, method, e.r.url("%s", path), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		return e.r.do(req)
	}
	// A read is retried like every small request of the client.
	var resp *http.Response
	err = retry(ctx, func() error {
		var err error
		resp, err = e.r.do(req.Clone(ctx))
		return err
	})
	return resp, err
}

// Manifest fetches the manifest under reference (a tag or a digest),
// checked against want when given and against the digest the registry
// sends, with its digest and media type. One that is not there is
// ErrNotFound.
func (e *Endpoint) Manifest(ctx context.Context, reference string, want digest.Digest) ([]byte, digest.Digest, string, error) {
	return fetchManifest(ctx, e.r, reference, want)
}

// PutManifest stores a manifest under tag and checks the digest the
// registry stored it under.
func (e *Endpoint) PutManifest(ctx context.Context, tag string, body []byte, mediaType string) (digest.Digest, error) {
	d := digest.FromBytes(body)
	return d, putManifest(ctx, e.r, tag, body, mediaType, d)
}
