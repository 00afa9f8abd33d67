//go:build unix

package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// BenchmarkRegistryThroughput pushes and pulls one blob (1 GiB; set
// MODELCTL_BENCH_SIZE) through the registry on versitygw, and the same
// bytes with minio-go's PutObject and GetObject to the same versitygw, in
// one run. The registry is `modelctl serve --storage s3://...` when
// MODELCTL_BENCH_SERVE=binary, else the same handler in this process.
// scripts/bench-s3.sh reports the ratios of medians.
//
// Pushes are what OCI clients send: "monolithic" is POST then one PUT with
// the digest and the body (oras, curl); "chunked" is PATCHes of 64 MiB and
// a final PUT (modelctl push).
func BenchmarkRegistryThroughput(b *testing.B) {
	data := benchData(b)
	size := int64(len(data))
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(data))

	srv := s3test.Start(b)
	ctx := context.Background()
	cfg := s3.Config{Bucket: srv.Bucket, Prefix: "registry", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: benchPartSize(b)}
	base := startRegistry(b, srv, cfg)
	c, err := srv.Client()
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}

	b.Run("put=minio-PutObject", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			if _, err := c.PutObject(ctx, srv.Bucket, "raw/obj", bytes.NewReader(data), size, minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put=registry-monolithic", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			deleteBlob(b, client, base, dgst, c, srv.Bucket, cfg.Prefix)
			loc := startUpload(b, client, base)
			req, _ := http.NewRequest(http.MethodPut, withDigest(b, loc, dgst), bytes.NewReader(data))
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/octet-stream")
			expect(b, client, req, http.StatusCreated)
		}
	})
	b.Run("put=registry-chunked-64MiB", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		const chunk = 64 << 20
		for b.Loop() {
			deleteBlob(b, client, base, dgst, c, srv.Bucket, cfg.Prefix)
			loc := startUpload(b, client, base)
			for off := int64(0); off < size; off += chunk {
				end := min(off+chunk, size)
				req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(data[off:end]))
				req.ContentLength = end - off
				req.Header.Set("Content-Type", "application/octet-stream")
				req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
				resp := expect(b, client, req, http.StatusAccepted)
				loc = resolve(b, base, resp.Header.Get("Location"))
			}
			req, _ := http.NewRequest(http.MethodPut, withDigest(b, loc, dgst), nil)
			expect(b, client, req, http.StatusCreated)
		}
	})
	b.Run("get=minio-GetObject", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			o, err := c.GetObject(ctx, srv.Bucket, "raw/obj", minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, o)
			o.Close()
			if err != nil || n != size {
				b.Fatalf("GetObject: %d bytes, %v", n, err)
			}
		}
	})
	b.Run("get=registry", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			resp, err := client.Get(base + "/v2/bench/blob/blobs/" + dgst)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != size || resp.StatusCode != http.StatusOK {
				b.Fatalf("GET blob: %s, %d bytes, %v", resp.Status, n, err)
			}
		}
	})
}

// startRegistry serves the registry on S3 and returns its base URL.
func startRegistry(b *testing.B, srv *s3test.Server, cfg s3.Config) string {
	if os.Getenv("MODELCTL_BENCH_SERVE") == "binary" {
		p := testenv.StartServe(b, []string{
			"AWS_ACCESS_KEY_ID=" + cfg.AccessKey, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretKey, "AWS_REGION=" + cfg.Region,
		}, "--storage", "s3://"+cfg.Bucket+"/"+cfg.Prefix, "--s3-endpoint", cfg.Endpoint, "--s3-region", cfg.Region,
			"--log-level", "error")
		return "http://" + p.Addr
	}
	d, err := s3.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := registry.New(registry.Config{
		Store:  storage.NewStore(d),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: reg}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

func expect(b *testing.B, c *http.Client, req *http.Request, status int) *http.Response {
	b.Helper()
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != status {
		b.Fatalf("%s %s: %s, want %d: %s", req.Method, req.URL.Path, resp.Status, status, body)
	}
	return resp
}

func startUpload(b *testing.B, c *http.Client, base string) string {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/bench/blob/blobs/uploads/", nil)
	resp := expect(b, c, req, http.StatusAccepted)
	return resolve(b, base, resp.Header.Get("Location"))
}

// deleteBlob removes the blob from the repository and its content from
// the bucket (the registry keeps content until garbage collection), so that
// each push stores it again.
func deleteBlob(b *testing.B, c *http.Client, base, dgst string, mc *minio.Client, bucket, prefix string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodDelete, base+"/v2/bench/blob/blobs/"+dgst, nil)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	hex := dgst[len("sha256:"):]
	key := prefix + "/" + storage.BlobPath(digest.Digest(dgst))
	if err := mc.RemoveObject(context.Background(), bucket, key, minio.RemoveObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := mc.StatObject(context.Background(), bucket, key, minio.StatObjectOptions{}); err == nil {
		b.Fatalf("blob %s still stored at %s", hex, key)
	}
}

func resolve(b *testing.B, base, loc string) string {
	b.Helper()
	bu, _ := url.Parse(base)
	u, err := bu.Parse(loc)
	if err != nil || loc == "" {
		b.Fatalf("upload location %q: %v", loc, err)
	}
	return u.String()
}

func withDigest(b *testing.B, loc, dgst string) string {
	b.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("digest", dgst)
	u.RawQuery = q.Encode()
	return u.String()
}
