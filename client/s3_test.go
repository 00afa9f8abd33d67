package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// An s3:// push writes the registry's layout into the bucket: a registry
// serving the bucket serves it, and an s3:// pull reads what was pushed
// through the registry.
func TestS3PushPullThroughRegistry(t *testing.T) {
	s3srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3srv.SecretKey)
	t.Setenv("AWS_REGION", s3srv.Region)
	ctx := context.Background()
	c := newTestClient(t, Options{S3Endpoint: s3srv.Endpoint, ChunkSize: 8 << 20})

	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 5000)
	writeRandom(t, filepath.Join(src, "model.onnx.data"), 20<<20+1)
	files := []PushFile{
		{Path: "model.onnx", Source: filepath.Join(src, "model.onnx")},
		{Path: "model.onnx.data", Source: filepath.Join(src, "model.onnx.data")},
	}
	ref, err := ParseReference("s3://" + s3srv.Bucket + "/registry/sarai/audio:int8")
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := c.Push(ctx, ref, PushOptions{Files: files, Pack: manifests.PackOptions{Name: "audio"}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Push(ctx, ref, PushOptions{Files: files, Pack: manifests.PackOptions{Name: "audio"}})
	if err != nil || again.Transferred != 0 || again.Digest != pushed.Digest {
		t.Fatalf("re-push to the bucket: %+v %v", again, err)
	}

	// A registry over the same bucket serves it.
	serve := testenv.StartServe(t, []string{
		"AWS_ACCESS_KEY_ID=" + s3srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3srv.SecretKey, "AWS_REGION=" + s3srv.Region,
	}, "--storage", "s3://"+s3srv.Bucket+"/registry", "--s3-endpoint", s3srv.Endpoint)
	viaHTTP, _ := ParseReference(serve.Addr + "/sarai/audio:int8")
	dst := filepath.Join(t.TempDir(), "http")
	pr, err := newTestClient(t, Options{}).Pull(ctx, viaHTTP, dst)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Digest != pushed.Digest {
		t.Errorf("registry serves %s, pushed %s", pr.Digest, pushed.Digest)
	}
	for _, f := range files {
		sameFile(t, f.Source, filepath.Join(dst, f.Path))
	}

	// Pushed through the registry, pulled straight from the bucket.
	other := filepath.Join(t.TempDir(), "other.onnx")
	writeRandom(t, other, 3<<20)
	viaHTTP2, _ := ParseReference(serve.Addr + "/sarai/other:v1")
	if _, err := newTestClient(t, Options{}).Push(ctx, viaHTTP2, PushOptions{Files: []PushFile{{Path: "other.onnx", Source: other}}}); err != nil {
		t.Fatal(err)
	}
	fromBucket, _ := ParseReference("s3://" + s3srv.Bucket + "/registry/sarai/other:v1")
	dst2 := filepath.Join(t.TempDir(), "s3")
	if _, err := newTestClient(t, Options{S3Endpoint: s3srv.Endpoint}).Pull(ctx, fromBucket, dst2); err != nil {
		t.Fatal(err)
	}
	sameFile(t, other, filepath.Join(dst2, "other.onnx"))
	if _, err := os.Stat(filepath.Join(dst2, ".modelctl", "receipt.json")); err != nil {
		t.Error(err)
	}

	// ls of the bucket sees both, whoever pushed them.
	lister := newTestClient(t, Options{S3Endpoint: s3srv.Endpoint})
	repos, err := lister.ListS3(ctx, "s3://"+s3srv.Bucket+"/registry")
	if err != nil || strings.Join(repos, ",") != "sarai/audio,sarai/other" {
		t.Errorf("ls of the bucket: %v, %v", repos, err)
	}
	tags, err := lister.ListS3(ctx, "s3://"+s3srv.Bucket+"/registry/sarai/audio/")
	if err != nil || strings.Join(tags, ",") != "int8" {
		t.Errorf("ls of a repository in the bucket: %v, %v", tags, err)
	}
	if _, err := lister.ListS3(ctx, "s3://"+s3srv.Bucket+"/registry/sarai/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ls of a repository not in the bucket: %v", err)
	}
	if _, err := lister.ListS3(ctx, "s3://"+s3srv.Bucket+"/registry/sarai/audio:int8"); err == nil {
		t.Error("ls of a tag did not fail")
	}
}
