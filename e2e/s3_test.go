package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// s3Serve starts `modelctl serve` over the bucket of gw, on addr (a free
// port when empty), with credentials from the environment as users give them.
func s3Serve(t *testing.T, gw *s3test.Server, addr string, extra ...string) *testenv.Process {
	t.Helper()
	if addr == "" {
		addr = testenv.FreeAddr(t)
	}
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey, "AWS_REGION=" + gw.Region}
	return testenv.Start(t, addr, "http://%s/healthz", env, testenv.Modelctl(t),
		append([]string{"serve", "--addr", addr, "--storage", "s3://" + gw.Bucket + "/registry", "--s3-endpoint", gw.Endpoint, "--log-level", "warn"}, extra...)...)
}

// TestS3Redirect: with --s3-redirect a blob GET answers 307 with a presigned
// URL of the bucket, which serves the exact bytes without credentials.
func TestS3Redirect(t *testing.T) {
	gw := s3test.Start(t)
	srv := s3Serve(t, gw, "", "--s3-redirect")
	base := "http://" + srv.Addr
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	dgst := "sha256:" + hex.EncodeToString(sum[:])
	u := &upload{t: t, base: base}
	resp := u.do(http.MethodPost, base+"/v2/r/blobs/uploads/?digest="+dgst, bytes.NewReader(data), nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic POST: %d", resp.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(base + "/v2/r/blobs/" + dgst)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, gw.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("GET with --s3-redirect: %d, Location %q; want 307 to a presigned %s URL", resp.StatusCode, loc, gw.Endpoint)
	}
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("presigned GET: %d, %d bytes", resp.StatusCode, len(got))
	}
	// HEAD still answers from the registry, with the digest.
	resp = u.do(http.MethodHead, base+"/v2/r/blobs/"+dgst, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != dgst {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
}

func TestConformanceS3(t *testing.T) {
	gw := s3test.Start(t)
	srv := s3Serve(t, gw, "")
	runConformance(t, srv.Addr)
}

// TestS3TwoServersActAsOne: two stateless servers over one bucket. A chunked
// upload started through one is continued and completed through the other;
// what is pushed through one is pulled and deleted through the other.
func TestS3TwoServersActAsOne(t *testing.T) {
	gw := s3test.Start(t)
	a := s3Serve(t, gw, "")
	b := s3Serve(t, gw, "")
	baseA, baseB := "http://"+a.Addr, "http://"+b.Addr
	u := &upload{t: t, base: baseA}

	data := make([]byte, 12<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	dgst := "sha256:" + hex.EncodeToString(sum[:])

	resp := u.do(http.MethodPost, baseA+"/v2/team/model/blobs/uploads/", nil, nil)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	resp = u.do(http.MethodPatch, baseA+loc, bytes.NewReader(data[:7<<20]), map[string]string{"Content-Range": fmt.Sprintf("0-%d", 7<<20-1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH through A: %d", resp.StatusCode)
	}
	resp = u.do(http.MethodGet, baseB+loc, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != fmt.Sprintf("0-%d", 7<<20-1) {
		t.Fatalf("status through B: %d, Range %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	resp = u.do(http.MethodPatch, baseB+loc, bytes.NewReader(data[7<<20:]), map[string]string{"Content-Range": fmt.Sprintf("%d-%d", 7<<20, len(data)-1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH through B: %d", resp.StatusCode)
	}
	resp = u.do(http.MethodPut, baseB+loc+"?digest="+dgst, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT through B: %d", resp.StatusCode)
	}
	resp = u.do(http.MethodGet, baseA+"/v2/team/model/blobs/"+dgst, nil, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("blob through A after upload through A and B: %d bytes", len(got))
	}

	// A whole artifact with oras: push through A, pull through B.
	oras := testenv.Tool(t, "oras")
	src := t.TempDir()
	want := writeRandomFile(t, filepath.Join(src, "model.onnx.data"), 20<<20)
	run(t, src, oras, "push", "--plain-http", a.Addr+"/team/model:v1", "model.onnx.data")
	dst := t.TempDir()
	run(t, dst, oras, "pull", "--plain-http", b.Addr+"/team/model:v1")
	if fileSHA256(t, filepath.Join(dst, "model.onnx.data")) != want {
		t.Fatal("file pulled through B differs from the one pushed through A")
	}
	// Delete through B; A no longer serves it.
	resp = u.do(http.MethodHead, baseB+"/v2/team/model/manifests/v1", nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	resp.Body.Close()
	mdgst := resp.Header.Get("Docker-Content-Digest")
	resp = u.do(http.MethodDelete, baseB+"/v2/team/model/manifests/"+mdgst, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE through B: %d", resp.StatusCode)
	}
	for _, ref := range []string{"v1", mdgst} {
		resp = u.do(http.MethodGet, baseA+"/v2/team/model/manifests/"+ref, nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s through A after delete through B: %d, want 404", ref, resp.StatusCode)
		}
	}
}

// TestS3ChunkedUploadSurvivesKill9: a multi-hundred-MB chunked upload on S3,
// the server killed mid-chunk, restarted, resumed from the committed offset.
func TestS3ChunkedUploadSurvivesKill9(t *testing.T) {
	gw := s3test.Start(t)
	addr := testenv.FreeAddr(t)
	killDuringChunkedUpload(t, func() *testenv.Process { return s3Serve(t, gw, addr) }, 64<<20, 4)
}

// TestS3MonolithicPushVerifies: a blob sent whole with its digest streams
// straight to its content address on S3; a wrong digest leaves nothing.
func TestS3MonolithicPushVerifies(t *testing.T) {
	gw := s3test.Start(t)
	// Its parts are spooled in a directory of the test's own.
	srv := s3Serve(t, gw, "", "--s3-spool-dir", t.TempDir())
	base := "http://" + srv.Addr
	u := &upload{t: t, base: base}
	data := make([]byte, 20<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	good := "sha256:" + hex.EncodeToString(sum[:])
	wrong := sha256.Sum256([]byte("something else"))
	bad := "sha256:" + hex.EncodeToString(wrong[:])

	resp := u.do(http.MethodPost, base+"/v2/r/blobs/uploads/?digest="+bad, bytes.NewReader(data), nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("monolithic POST with a wrong digest: %d, want 400", resp.StatusCode)
	}
	for _, d := range []string{bad, good} {
		resp = u.do(http.MethodHead, base+"/v2/r/blobs/"+d, nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("HEAD %s after a refused push: %d, want 404", d, resp.StatusCode)
		}
	}
	// POST then one PUT with the whole body: the oras/docker way.
	resp = u.do(http.MethodPost, base+"/v2/r/blobs/uploads/", nil, nil)
	resp.Body.Close()
	resp = u.do(http.MethodPut, base+resp.Header.Get("Location")+"?digest="+good, bytes.NewReader(data), nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST+PUT: %d", resp.StatusCode)
	}
	resp = u.do(http.MethodGet, base+"/v2/r/blobs/"+good, nil, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("GET after POST+PUT: %d bytes", len(got))
	}
}

// A spool directory the server cannot write to is refused at start, with
// the flag named, not at the first upload.
func TestS3SpoolDirRefusedAtStart(t *testing.T) {
	gw := s3test.Start(t)
	cmd := exec.Command(testenv.Modelctl(t), "serve", "--addr", testenv.FreeAddr(t), "--storage", "s3://"+gw.Bucket+"/registry",
		"--s3-endpoint", gw.Endpoint, "--s3-spool-dir", filepath.Join(t.TempDir(), "missing"))
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+gw.AccessKey, "AWS_SECRET_ACCESS_KEY="+gw.SecretKey, "AWS_REGION="+gw.Region)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--s3-spool-dir") {
		t.Fatalf("serve with a missing spool directory: %v\n%s", err, out)
	}
}
