// Package s3test starts a real S3 server for tests: versitygw v1.8.0 with its
// posix backend, on a free 127.0.0.1 port, over a temporary directory, with
// one empty bucket. `make tools` installs the binary into .cache/bin.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/modelctl/modelctl/internal/testenv"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is the URL to give an S3 client: http://127.0.0.1:PORT.
	Endpoint string
	// Addr is 127.0.0.1:PORT.
	Addr      string
	AccessKey string
	SecretKey string
	// Bucket exists and is empty when Start returns.
	Bucket string
	// Region is the region versitygw answers for.
	Region string
	// Dir is the posix backend's root; the bucket is the directory Dir/Bucket.
	Dir string

	proc *testenv.Process
}

// StartVersityGW starts versitygw for the test and returns what a client
// needs to reach it. The server is stopped when the test ends.
func StartVersityGW(t testing.TB) (endpoint, accessKey, secretKey, bucket string) {
	t.Helper()
	s := Start(t)
	return s.Endpoint, s.AccessKey, s.SecretKey, s.Bucket
}

// Start starts versitygw for the test, creates an empty bucket and returns
// the server. It is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.Tool(t, "versitygw")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr:      testenv.FreeAddr(t),
		AccessKey: "modelctl-test",
		SecretKey: "modelctl-test-secret-" + randomHex(8),
		Bucket:    "modelctl-test",
		Region:    "us-east-1",
		Dir:       root,
	}
	s.Endpoint = "http://" + s.Addr
	args := []string{
		"--port", s.Addr,
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--region", s.Region,
		"--quiet",
		"posix",
	}
	// The posix backend keeps object metadata (ETags, content types) in
	// user xattrs; where the temporary filesystem has none (older tmpfs,
	// some overlay setups) it keeps them in a sidecar directory instead.
	if !userXattrs(root) {
		side := filepath.Join(dir, "meta")
		if err := os.MkdirAll(side, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--sidecar", side)
	}
	args = append(args, root)
	// The server reads its credentials from flags only: clear the variables
	// it would also accept so a developer's environment cannot interfere.
	env := []string{"ROOT_ACCESS_KEY_ID=", "ROOT_ACCESS_KEY=", "ROOT_SECRET_ACCESS_KEY=", "ROOT_SECRET_KEY=", "VGW_PORT="}
	s.proc = testenv.Start(t, s.Addr, "", env, bin, args...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	// The port accepts connections a moment before the S3 API answers.
	for {
		err = c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("versitygw: create bucket %s: %v\n%s", s.Bucket, err, s.proc.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// Client returns a minio-go client for the server with its root credentials.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Addr, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: false,
		Region: s.Region,
	})
}

// MakeBucket creates another empty bucket and returns its name.
func (s *Server) MakeBucket(t testing.TB) string {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	name := "b-" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("versitygw: create bucket %s: %v", name, err)
	}
	return name
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
