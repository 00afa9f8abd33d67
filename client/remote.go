package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// The primitives of a registry repository (backend), one HTTP request each.

func (r *repo) location() string { return r.host }

func (r *repo) repository() string { return r.name }

func (r *repo) getManifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	req, err := r.newRequest(ctx, http.MethodGet, r.url("/v2/%s/manifests/%s", r.name, reference), nil)
	if err != nil {
		return nil, "", "", err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := r.do(req, http.StatusOK)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, manifests.MaxManifestSize+1))
	if err != nil {
		return nil, "", "", fmt.Errorf("GET manifest %s: %w", reference, err)
	}
	if len(b) > manifests.MaxManifestSize {
		return nil, "", "", fmt.Errorf("manifest %s: over the %d-byte limit", reference, manifests.MaxManifestSize)
	}
	return b, resp.Header.Get("Content-Type"), digest.Digest(resp.Header.Get("Docker-Content-Digest")), nil
}

// manifestAccept lists the manifests a reference may name.
var manifestAccept = strings.Join([]string{
	manifests.MediaTypeImageManifest,
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

func (r *repo) putManifest(ctx context.Context, tag string, data []byte, mediaType string) (digest.Digest, error) {
	req, err := r.newRequest(ctx, http.MethodPut, r.url("/v2/%s/manifests/%s", r.name, tag), strings.NewReader(string(data)))
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", mediaType)
	resp, err := r.do(req, http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return digest.Digest(resp.Header.Get("Docker-Content-Digest")), nil
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

// mountBlob tries the repositories of this registry that the cache knows
// to hold d. A registry that cannot mount (202: it opened an upload
// instead) gets that session cancelled.
func (r *repo) mountBlob(ctx context.Context, d digest.Digest) (bool, error) {
	for _, from := range r.c.cache.Locations(d, r.host) {
		if from == r.name {
			continue
		}
		if ok, err := r.mount(ctx, d, from); err == nil && ok {
			return true, nil
		}
	}
	return false, nil
}

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

// errRange is a registry that does not answer Range requests as asked:
// asking again would get the same answer.
var errRange = errors.New("bad range answer")

func (r *repo) openRange(ctx context.Context, d digest.Digest, size, off, end int64) (io.ReadCloser, error) {
	req, err := r.newRequest(ctx, http.MethodGet, r.url("/v2/%s/blobs/%s", r.name, d), nil)
	if err != nil {
		return nil, err
	}
	whole := off == 0 && end == size
	if !whole {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	}
	resp, err := r.do(req, http.StatusOK, http.StatusPartialContent)
	if err != nil {
		return nil, err
	}
	if !whole && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("GET blob %s: %w: the registry ignored Range (status %d): cannot resume or split", d, errRange, resp.StatusCode)
	}
	if !whole {
		// Bytes of another range would only show as a digest mismatch at
		// the end, after the whole blob: refuse them now.
		var start, last int64
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if _, err := fmt.Sscanf(cr, "bytes %d-%d", &start, &last); err != nil || start != off || last != end-1 {
				resp.Body.Close()
				return nil, fmt.Errorf("GET blob %s: %w: asked for bytes %d-%d, the registry sent %q", d, errRange, off, end-1, cr)
			}
		}
	}
	return resp.Body, nil
}

// remoteUpload is an upload session of a registry: its URL moves with
// every answer (Location).
type remoteUpload struct {
	r        *repo
	loc      string
	minChunk int64 // the registry's OCI-Chunk-Min-Length, 0 when none
}

func (r *repo) startUpload(ctx context.Context) (upload, error) {
	req, err := r.newRequest(ctx, http.MethodPost, r.url("/v2/%s/blobs/uploads/", r.name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.do(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := resolveLocation(resp)
	if err != nil {
		return nil, err
	}
	u := &remoteUpload{r: r, loc: loc}
	if v := resp.Header.Get("OCI-Chunk-Min-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n <= 1<<32 {
			u.minChunk = n
		}
	}
	return u, nil
}

func (r *repo) resumeUpload(ctx context.Context, id string) (upload, int64, error) {
	u := &remoteUpload{r: r, loc: id}
	n, err := u.status(ctx)
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}

func (u *remoteUpload) id() string { return u.loc }

func (u *remoteUpload) chunkSize() int64 { return max(u.r.c.chunkSize(u.r.host), u.minChunk) }

// status asks how many bytes of the upload the registry has committed.
func (u *remoteUpload) status(ctx context.Context) (int64, error) {
	r := u.r
	req, err := r.newRequest(ctx, http.MethodGet, u.loc, nil)
	if err != nil {
		return 0, err
	}
	resp, err := r.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.Header.Get("Location") != "" {
		if u.loc, err = resolveLocation(resp); err != nil {
			return 0, err
		}
	}
	n, err := parseRangeEnd(resp.Header.Get("Range"))
	if err != nil {
		return 0, fmt.Errorf("upload status %s: %w", redactURL(u.loc), err)
	}
	return n, nil
}

// append sends the chunk as one PATCH. When the chunk runs to the end of
// the file, the request body is the file itself, so the HTTP transport
// hands it to sendfile (no copy through user space) on plain-HTTP
// connections, while a goroutine hashes the same range from the page
// cache: the send and the hash run side by side.
func (u *remoteUpload) append(ctx context.Context, c chunk) (int64, error) {
	r := u.r
	var body io.Reader
	var hashed chan error
	stop := make(chan struct{}) // the request is over
	if c.off+c.n == fileSize(c.file) {
		// The transport checks that a body ends where ContentLength says, so
		// the file itself can be the body only for a chunk that runs to its
		// end; then it goes out with sendfile.
		f, err := os.Open(c.file.Name())
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", c.file.Name(), err)
		}
		if _, err := f.Seek(c.off, io.SeekStart); err != nil {
			f.Close()
			return 0, fmt.Errorf("seek %s: %w", c.file.Name(), err)
		}
		body = f
		hashed = make(chan error, 1)
		if c.h == nil {
			// The digest is known: nothing to hash, but the progress
			// follows the file offset sendfile moves.
			go followOffset(stop, f, c.prog, hashed)
		} else {
			go func() {
				_, err := feedFile(c.file, c.off, c.n, &hashingWriter{h: c.h, prog: c.prog})
				hashed <- err
			}()
		}
	} else {
		body = c.reader()
	}
	req, err := r.newRequest(ctx, http.MethodPatch, u.loc, body)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
		if hashed != nil {
			close(stop)
			<-hashed
		}
		return 0, err
	}
	req.ContentLength = c.n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", c.off, c.off+c.n-1))
	resp, err := r.do(req, http.StatusAccepted, http.StatusNoContent)
	if hashed != nil {
		close(stop)
		if herr := <-hashed; herr != nil && err == nil {
			resp.Body.Close()
			return 0, fmt.Errorf("read %s: %w", c.file.Name(), herr)
		}
	}
	if err != nil {
		if refusesChunks(err) {
			return 0, fmt.Errorf("%w: %w", errChunksRefused, err)
		}
		return 0, err
	}
	resp.Body.Close()
	if resp.Header.Get("Location") != "" {
		if u.loc, err = resolveLocation(resp); err != nil {
			return 0, err
		}
	}
	committed := c.off + c.n
	if rh := resp.Header.Get("Range"); rh != "" {
		if n, err := parseRangeEnd(rh); err == nil && n > 0 {
			committed = n
		}
	}
	return committed, nil
}

// commit completes the upload under its digest with a PUT.
func (u *remoteUpload) commit(ctx context.Context, d digest.Digest, body io.Reader, size int64) error {
	r := u.r
	pu, err := url.Parse(u.loc)
	if err != nil {
		return fmt.Errorf("upload URL %s: %w", redactURL(u.loc), err)
	}
	q := pu.Query()
	q.Set("digest", d.String())
	pu.RawQuery = q.Encode()
	req, err := r.newRequest(ctx, http.MethodPut, pu.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if body == nil {
		req.ContentLength = 0
	} else if size > 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := r.do(req, http.StatusCreated, http.StatusAccepted, http.StatusNoContent)
	if err != nil {
		if isDigestRefusedHTTP(err) {
			return fmt.Errorf("%w: %w", errDigestRefused, err)
		}
		return err
	}
	resp.Body.Close()
	return nil
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

// isDigestRefusedHTTP reports a registry refusing an upload's digest: the
// bytes it received hash to something else.
func isDigestRefusedHTTP(err error) bool {
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
