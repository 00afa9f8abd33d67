//go:build unix

package s3_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// BenchmarkThroughput compares the driver's resumable Writer and its Reader
// with minio-go's own PutObject and GetObject of the same bytes, on one
// versitygw, in one run: scripts/bench-s3.sh turns the MB/s into ratios
// (medians of several runs). MODELCTL_BENCH_SIZE sets the size (1 GiB).
//
//	go test -run '^$' -bench Throughput -benchtime 1x -count 5 ./registry/storage/s3/
func BenchmarkThroughput(b *testing.B) {
	data := benchData(b)
	size := int64(len(data))

	srv := s3test.Start(b)
	cfg := s3.Config{Bucket: srv.Bucket, Prefix: "bench", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: benchPartSize(b)}
	ctx := context.Background()
	d, err := s3.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	c := d.Client()
	// The registry's handlers copy request bodies in io.Copy's 32 KiB
	// writes; hide bytes.Reader's WriterTo so the driver sees the same.
	type onlyReader struct{ io.Reader }

	b.Run("put=minio-PutObject", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			if _, err := c.PutObject(ctx, srv.Bucket, "raw/obj", bytes.NewReader(data), size, minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put=driver-Writer", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			w, err := d.Writer(ctx, "blobs/obj/data", 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(w, onlyReader{bytes.NewReader(data)}); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A monolithic upload whose digest is known up front goes straight to
	// its content address.
	b.Run("put=driver-PutStream", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			if _, err := d.PutStream(ctx, "blobs/stream/data", onlyReader{bytes.NewReader(data)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A chunked upload: Close and resume every 64 MiB, from a new driver
	// (another server process), as OCI chunked uploads do.
	b.Run("put=driver-Writer-chunked-64MiB", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		const chunk = 64 << 20
		for b.Loop() {
			for off := int64(0); off < size; off += chunk {
				d2, err := s3.New(ctx, d.Config())
				if err != nil {
					b.Fatal(err)
				}
				w, err := d2.Writer(ctx, "blobs/chunked/data", off)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(w, onlyReader{bytes.NewReader(data[off:min(off+chunk, size)])}); err != nil {
					b.Fatal(err)
				}
				if off+chunk >= size {
					err = w.Commit(ctx)
				} else {
					err = w.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	// The registry moves a finished upload to its content address: on S3 a
	// server-side copy; minio-go's single CopyObject is the reference.
	b.Run("move=minio-CopyObject", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		if _, err := c.PutObject(ctx, srv.Bucket, "raw/copy-src", bytes.NewReader(data), size, minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: srv.Bucket, Object: "raw/copy-dst"},
				minio.CopySrcOptions{Bucket: srv.Bucket, Object: "raw/copy-src"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("move=driver-Move", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		src, dst := "blobs/move-a/data", "blobs/move-b/data"
		if _, err := c.PutObject(ctx, srv.Bucket, "bench/"+src, bytes.NewReader(data), size, minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := d.Move(ctx, src, dst); err != nil {
				b.Fatal(err)
			}
			src, dst = dst, src
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
	b.Run("get=driver-Reader", func(b *testing.B) {
		settle()
		b.SetBytes(size)
		for b.Loop() {
			r, err := d.Reader(ctx, "blobs/obj/data", 0)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil || n != size {
				b.Fatalf("Reader: %d bytes, %v", n, err)
			}
		}
	})
}

// settle flushes the dirty pages the previous variant left, so that each
// one starts from the same state of the disk (versitygw writes through the
// page cache).
func settle() { syscall.Sync() }

// benchPartSize is MODELCTL_BENCH_PART_SIZE, else the driver's default.
func benchPartSize(b *testing.B) int64 {
	v := os.Getenv("MODELCTL_BENCH_PART_SIZE")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < s3.MinPartSize {
		b.Fatalf("MODELCTL_BENCH_PART_SIZE=%q: want a byte count of at least %d", v, s3.MinPartSize)
	}
	return n
}

// benchData is the benchmarks' payload: MODELCTL_BENCH_SIZE bytes (1 GiB by
// default) of seeded pseudo-random data.
func benchData(b *testing.B) []byte {
	size := int64(1 << 30)
	if v := os.Getenv("MODELCTL_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("MODELCTL_BENCH_SIZE=%q: want a positive byte count", v)
		}
		size = n
	}
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	return data
}
