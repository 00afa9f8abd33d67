package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// BenchmarkPushPull measures one streamed PUT and one GET of a 256 MiB blob
// through a real listener; b.SetBytes makes the result MB/s.
func BenchmarkPushPull(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	src := filepath.Join(dir, "blob")
	f, _ := os.Create(src)
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	dgst := "sha256:" + hex.EncodeToString(h.Sum(nil))
	for _, mode := range []string{"push", "pull"} {
		b.Run(mode, func(b *testing.B) {
			drv, _ := filesystem.New(filepath.Join(b.TempDir(), "root"))
			srv, _ := New(Config{Store: storage.NewStore(drv), Logger: discardLogger()})
			ts := httptest.NewServer(srv)
			defer ts.Close()
			push := func() {
				resp, err := http.Post(ts.URL+"/v2/bench/blobs/uploads/", "", nil)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				body, _ := os.Open(src)
				req, _ := http.NewRequest(http.MethodPut, ts.URL+resp.Header.Get("Location")+"?digest="+dgst, body)
				req.ContentLength = size
				resp, err = http.DefaultClient.Do(req)
				body.Close()
				if err != nil || resp.StatusCode != http.StatusCreated {
					b.Fatalf("PUT: %v %v", err, resp)
				}
				resp.Body.Close()
			}
			if mode == "pull" {
				push()
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "push" {
					push()
					continue
				}
				resp, err := http.Get(ts.URL + "/v2/bench/blobs/" + dgst)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != size {
					b.Fatalf("GET: %d bytes (%s)", n, strconv.Itoa(resp.StatusCode))
				}
			}
		})
	}
}
