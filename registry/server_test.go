package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// fullDisk is a filesystem driver whose resumable writes fail with ENOSPC
// after limit bytes, as a real full disk does.
type fullDisk struct {
	*filesystem.Driver
	limit int64
}

func (d *fullDisk) Writer(ctx context.Context, p string, off int64) (storage.FileWriter, error) {
	w, err := d.Driver.Writer(ctx, p, off)
	if err != nil {
		return nil, err
	}
	return &fullWriter{FileWriter: w, left: d.limit - off}, nil
}

type fullWriter struct {
	storage.FileWriter
	left int64
}

func (w *fullWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > w.left {
		n, _ := w.FileWriter.Write(b[:max(w.left, 0)])
		w.left -= int64(n)
		return n, &pathError{syscall.ENOSPC}
	}
	n, err := w.FileWriter.Write(b)
	w.left -= int64(n)
	return n, err
}

type pathError struct{ errno syscall.Errno }

func (e *pathError) Error() string { return "write /data/x: " + e.errno.Error() }
func (e *pathError) Unwrap() error { return e.errno }

func newTestServer(t *testing.T, d storage.Driver) *httptest.Server {
	t.Helper()
	srv, err := New(Config{Store: storage.NewStore(d), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

func TestFullDiskAnswers507AndKeepsCommittedBytes(t *testing.T) {
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, &fullDisk{Driver: fs, limit: 3 << 20})
	resp, err := http.Post(ts.URL+"/v2/r/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := ts.URL + resp.Header.Get("Location")
	data := bytes.Repeat([]byte("x"), 5<<20)
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(data))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(body.String(), "storage is full") {
		t.Fatalf("PATCH on a full disk: %d %s; want 507 saying the storage is full", resp.StatusCode, body.String())
	}
	if strings.Contains(body.String(), "/data/x") {
		t.Fatalf("the error leaks a storage path: %s", body.String())
	}
	// What fit is committed; the client resumes from there.
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Range"); got != "0-3145727" {
		t.Fatalf("Range after ENOSPC = %q, want 0-3145727", got)
	}
}

func TestManifestLimitsAndValidation(t *testing.T) {
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, fs)
	sum := sha256.Sum256([]byte("x"))
	dg := "sha256:" + hex.EncodeToString(sum[:])
	tests := []struct {
		name, method, path string
		body               []byte
		header             map[string]string
		want               int
		code               string
	}{
		{"manifest over 4 MiB", http.MethodPut, "/v2/r/manifests/t", bytes.Repeat([]byte(" "), 4<<20+1), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, 413, "SIZE_INVALID"},
		{"invalid name", http.MethodGet, "/v2/UPPER/manifests/t", nil, nil, 400, "NAME_INVALID"},
		{"reserved name component", http.MethodGet, "/v2/a/_uploads/manifests/t", nil, nil, 400, "NAME_INVALID"},
		{"dot-dot in a name", http.MethodGet, "/v2/a..b/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"encoded dot-dot component", http.MethodGet, "/v2/a/%2e%2e/b/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"invalid digest", http.MethodGet, "/v2/r/blobs/sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"unknown algorithm", http.MethodGet, "/v2/r/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", nil, nil, 400, "DIGEST_INVALID"},
		{"unknown blob", http.MethodGet, "/v2/r/blobs/" + dg, nil, nil, 404, "BLOB_UNKNOWN"},
		{"unknown upload", http.MethodGet, "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", nil, nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"upload id not hex", http.MethodGet, "/v2/r/blobs/uploads/ZZ..zz", nil, nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"upload id with a path", http.MethodGet, "/v2/r/blobs/uploads/..%2f..%2fetc", nil, nil, 404, "UNSUPPORTED"},
		{"unknown repository tags", http.MethodGet, "/v2/nope/tags/list", nil, nil, 404, "NAME_UNKNOWN"},
		{"bad n", http.MethodGet, "/v2/_catalog?n=-1", nil, nil, 400, "UNSUPPORTED"},
		{"method not allowed", http.MethodPost, "/v2/r/manifests/t", nil, nil, 405, "UNSUPPORTED"},
		{"PUT without digest", http.MethodPut, "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", nil, nil, 400, "DIGEST_INVALID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, bytes.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(b.String(), `"code":"`+tc.code+`"`) {
				t.Fatalf("%s %s: %d %s; want %d %s", tc.method, tc.path, resp.StatusCode, b.String(), tc.want, tc.code)
			}
		})
	}
}

func TestMetricsAndHealth(t *testing.T) {
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, fs)
	data := []byte("hello")
	sum := sha256.Sum256(data)
	resp, err := http.Post(ts.URL+"/v2/r/blobs/uploads/?digest=sha256:"+hex.EncodeToString(sum[:]), "application/octet-stream", bytes.NewReader(data))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, _ = http.Get(ts.URL + "/healthz")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	resp, _ = http.Get(ts.URL + "/metrics")
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`modelctl_http_requests_total{method="POST",code="201"} 1`,
		`modelctl_http_received_bytes_total 5`,
		`modelctl_blobs_uploaded_total 1`,
		`modelctl_uploads_in_progress 0`,
		`modelctl_upload_buffers_in_use 0`,
		`modelctl_upload_buffers_budget 8`,
		`modelctl_http_request_duration_seconds_count{method="POST"} 1`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}
