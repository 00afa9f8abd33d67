package e2e

import (
	"bytes"
	"context"
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
	"time"

	"github.com/modelctl/modelctl/internal/testenv"
)

// writeRandomFile writes size random bytes to path and returns their sha256.
func writeRandomFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestORASRoundTrip pushes a file of a few hundred MB with the standard
// oras client and pulls it back byte-identical.
func TestORASRoundTrip(t *testing.T) {
	oras := testenv.Tool(t, "oras")
	srv := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn")
	src := t.TempDir()
	const size = 300 << 20
	want := writeRandomFile(t, filepath.Join(src, "model.bin"), size)
	ref := srv.Addr + "/sarai/audio-core:v1"
	run(t, src, oras, "push", "--plain-http", "--disable-path-validation", ref, "model.bin:application/vnd.cncf.model.weight.v1.raw")
	dst := t.TempDir()
	run(t, dst, oras, "pull", "--plain-http", ref)
	if got := fileSHA256(t, filepath.Join(dst, "model.bin")); got != want {
		t.Fatalf("pulled file sha256 %s, pushed %s", got, want)
	}
	// The blob went through the registry's upload path; its digest is the
	// file's, and the registry serves byte ranges of it.
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Addr+"/v2/sarai/audio-core/blobs/sha256:"+want, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || len(body) != 100 {
		t.Fatalf("range GET: status %d, %d bytes; want 206 and 100 bytes", resp.StatusCode, len(body))
	}
}

// upload is a minimal OCI upload client, so the test controls exactly when
// the server dies.
type upload struct {
	t        *testing.T
	base     string
	location string
}

func (u *upload) do(method, url string, body io.Reader, hdr map[string]string) *http.Response {
	u.t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		u.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

func (u *upload) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return u.base + loc
	}
	return loc
}

// TestChunkedUploadSurvivesKill9 kills the server with SIGKILL in the middle
// of a chunk, restarts it on the same storage, and finishes the upload from
// the offset the status request reports.
func TestChunkedUploadSurvivesKill9(t *testing.T) {
	root := t.TempDir()
	addr := testenv.FreeAddr(t)
	bin := testenv.Modelctl(t)
	start := func() *testenv.Process {
		return testenv.Start(t, addr, "http://%s/healthz", nil, bin, "serve", "--addr", addr, "--root", root, "--log-level", "warn")
	}
	killDuringChunkedUpload(t, start, 16<<20, 3)
}

// killDuringChunkedUpload uploads chunks*chunkSize random bytes in chunks,
// SIGKILLs the server half-way through the second-to-last chunk, restarts it
// with start, and completes the upload from the committed offset the status
// request reports; the stored blob must be byte-identical.
func killDuringChunkedUpload(t *testing.T, start func() *testenv.Process, chunkSize, chunks int) {
	t.Helper()
	srv := start()
	base := "http://" + srv.Addr
	data := make([]byte, chunks*chunkSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dgst := "sha256:" + hex.EncodeToString(sum[:])
	u := &upload{t: t, base: base}

	resp := u.do(http.MethodPost, base+"/v2/sarai/model/blobs/uploads/", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	u.location = u.abs(resp.Header.Get("Location"))

	// All chunks but the last two complete.
	for i := 0; i < chunks-2; i++ {
		resp = u.do(http.MethodPatch, u.location, bytes.NewReader(data[i*chunkSize:(i+1)*chunkSize]), map[string]string{
			"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", i*chunkSize, (i+1)*chunkSize-1),
		})
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH %d: %d", i, resp.StatusCode)
		}
		u.location = u.abs(resp.Header.Get("Location"))
	}
	sent := (chunks - 2) * chunkSize

	// The next chunk: stream half of it, then SIGKILL the server mid-request.
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPatch, u.location, pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("PATCH completed with %d although the server was killed", resp.StatusCode)
		}
		errc <- err
	}()
	if _, err := pw.Write(data[sent : sent+chunkSize/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the server write what it received
	srv.Kill()
	pw.CloseWithError(io.ErrClosedPipe)
	if err := <-errc; err == nil || strings.Contains(err.Error(), "completed") {
		t.Fatalf("interrupted PATCH: %v", err)
	}

	// Restart on the same storage: the session is still there.
	srv = start()
	u.base = "http://" + srv.Addr
	resp = u.do(http.MethodGet, u.location, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status GET after restart: %d", resp.StatusCode)
	}
	var end int64
	if _, err := fmt.Sscanf(resp.Header.Get("Range"), "0-%d", &end); err != nil {
		t.Fatalf("Range %q: %v", resp.Header.Get("Range"), err)
	}
	committed := end + 1
	if committed < int64(sent) || committed > int64(len(data)) {
		t.Fatalf("committed range after restart is %d bytes; want at least the completed chunks (%d)", committed, sent)
	}
	t.Logf("after kill -9 and restart the server reports %d of %d bytes committed", committed, len(data))

	// A chunk that does not start at the committed offset is refused.
	resp = u.do(http.MethodPatch, u.location, bytes.NewReader(data[:10]), map[string]string{"Content-Range": "0-9"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("out-of-order PATCH: %d, want 416", resp.StatusCode)
	}

	// Continue from the committed offset and complete.
	resp = u.do(http.MethodPatch, u.location, bytes.NewReader(data[committed:]), map[string]string{
		"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", committed, len(data)-1),
	})
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH after restart: %d", resp.StatusCode)
	}
	u.location = u.abs(resp.Header.Get("Location"))
	sep := "?"
	if strings.Contains(u.location, "?") {
		sep = "&"
	}
	resp = u.do(http.MethodPut, u.location+sep+"digest="+dgst, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	resp = u.do(http.MethodGet, u.base+"/v2/sarai/model/blobs/"+dgst, nil, nil)
	h := sha256.New()
	n, _ := io.Copy(h, resp.Body)
	resp.Body.Close()
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != dgst || n != int64(len(data)) {
		t.Fatalf("blob after resumed upload: %d bytes, %s; want %d bytes, %s", n, got, len(data), dgst)
	}
}

// TestGracefulShutdown sends SIGTERM while an upload is in flight: the
// request finishes, new connections are refused, the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn")
	base := "http://" + srv.Addr
	u := &upload{t: t, base: base}
	resp := u.do(http.MethodPost, base+"/v2/a/b/blobs/uploads/", nil, nil)
	resp.Body.Close()
	loc := u.abs(resp.Header.Get("Location"))

	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, loc+"?digest=sha256:"+hex.EncodeToString(sum[:]), pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	_, _ = pw.Write(data[:1<<20])
	time.Sleep(200 * time.Millisecond)
	if err := srv.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	_, _ = pw.Write(data[1<<20:])
	pw.Close()
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("in-flight upload during shutdown: status %d, want 201", code)
	}
	srv.Stop()
	if code := srv.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
}
