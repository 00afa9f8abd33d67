package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// streamOnly hides the filesystem readers' Seek, as the S3 driver's readers
// have none, so both of the server's download paths are exercised.
type streamOnly struct{ *filesystem.Driver }

func (d streamOnly) Reader(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	rc, err := d.Driver.Reader(ctx, p, off)
	if err != nil {
		return nil, err
	}
	return struct{ io.ReadCloser }{rc}, nil
}

// Blob GETs answer Range the same way on every driver, as docs/registry.md
// and docs/security.md say: one range, 416 outside the blob. The filesystem
// path went through http.ServeContent, which answered "bytes=-1" on an empty
// blob with 206 "bytes 0--1/0", "bytes=-0" with 206 "bytes 100000-99999/
// 100000", and several ranges with a multipart body.
func TestBlobRangeOnEveryPath(t *testing.T) {
	big := make([]byte, 100000)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for _, seekable := range []bool{true, false} {
		t.Run(fmt.Sprintf("seekable=%v", seekable), func(t *testing.T) {
			fs, err := filesystem.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var d storage.Driver = fs
			if !seekable {
				d = streamOnly{fs}
			}
			ts := newTestServer(t, d)
			push := func(b []byte) string {
				dg := digest.FromBytes(b)
				resp, err := http.Post(ts.URL+"/v2/r/blobs/uploads/?digest="+string(dg), "application/octet-stream", bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("push: %d", resp.StatusCode)
				}
				return ts.URL + "/v2/r/blobs/" + string(dg)
			}
			empty, full := push(nil), push(big)
			for _, tc := range []struct {
				url, rng     string
				status       int
				contentRange string
				body         []byte
			}{
				{empty, "bytes=-1", 416, "bytes */0", nil},
				{empty, "bytes=0-", 416, "bytes */0", nil},
				{full, "bytes=-0", 416, "bytes */100000", nil},
				{full, "bytes=100000-", 416, "bytes */100000", nil},
				{full, "bytes=10-5", 416, "bytes */100000", nil},
				{full, "bytes=0-9", 206, "bytes 0-9/100000", big[:10]},
				{full, "bytes=99990-", 206, "bytes 99990-99999/100000", big[99990:]},
				{full, "bytes=-10", 206, "bytes 99990-99999/100000", big[99990:]},
				{full, "bytes=99999-200000", 206, "bytes 99999-99999/100000", big[99999:]},
				// Several ranges, or another unit: the whole blob, as RFC
				// 9110 allows a server that honours single ranges only.
				{full, "bytes=0-1,5-6", 200, "", big},
				{full, "bytes=0-1, -2", 200, "", big},
				{full, "items=0-1", 200, "", big},
				{full, "", 200, "", big},
			} {
				req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
				if tc.rng != "" {
					req.Header.Set("Range", tc.rng)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
					t.Errorf("Range %q: %d Content-Range %q; want %d %q", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
					continue
				}
				if tc.status != 416 && !bytes.Equal(body, tc.body) {
					t.Errorf("Range %q: %d body bytes (%.40q), want %d", tc.rng, len(body), body, len(tc.body))
				}
			}
		})
	}
}
