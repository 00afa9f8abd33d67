package s3test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
)

// The helper's promise: a reachable server with an empty bucket that the
// returned credentials can write and read.
func TestStartVersityGW(t *testing.T) {
	s := Start(t)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	for o := range c.ListObjectsIter(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != 0 {
		t.Fatalf("new bucket holds %d objects, want 0", n)
	}
	want := []byte("hello, versitygw")
	if _, err := c.PutObject(ctx, s.Bucket, "dir/hello", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := c.GetObject(ctx, s.Bucket, "dir/hello", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	o.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get = %q, %v; want %q", got, err, want)
	}

	// Two servers in one test are independent.
	endpoint, _, _, bucket := StartVersityGW(t)
	if endpoint == s.Endpoint || bucket == "" {
		t.Fatalf("second server %s bucket %q", endpoint, bucket)
	}
	other := s.MakeBucket(t)
	if ok, err := c.BucketExists(ctx, other); err != nil || !ok {
		t.Fatalf("bucket %s exists = %v, %v", other, ok, err)
	}
}
