package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

// faultProxy sits between the client and a real registry and misbehaves on
// purpose: it is how the tests reach the paths of a registry that refuses
// chunks, drops a connection mid-chunk, or answers 503.
type faultProxy struct {
	*httptest.Server
	mu         sync.Mutex
	patchSizes []int64
	bodyBytes  atomic.Int64
	hook       func(w http.ResponseWriter, r *http.Request) bool // true: handled
	respHook   func(r *http.Response)                            // set with setRespHook
}

// setRespHook installs f under the lock: a server started earlier reads it.
func (p *faultProxy) setRespHook(f func(r *http.Response)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.respHook = f
}

func newFaultProxy(t *testing.T, backend string) *faultProxy {
	u, _ := url.Parse("http://" + backend)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	rp.ModifyResponse = func(r *http.Response) error {
		p.mu.Lock()
		hook := p.respHook
		p.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			p.mu.Lock()
			p.patchSizes = append(p.patchSizes, r.ContentLength)
			p.mu.Unlock()
		}
		if p.hook != nil && p.hook(w, r) {
			return
		}
		if r.Method == http.MethodPatch {
			r.Body = &countingBody{r.Body, &p.bodyBytes}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *faultProxy) addr() string { return strings.TrimPrefix(p.URL, "http://") }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func pushRandom(t *testing.T, c *Client, ref string, size int64) (*PushResult, string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "model.onnx.data")
	writeRandom(t, src, size)
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(context.Background(), r, PushOptions{Files: []PushFile{{Path: "model.onnx.data", Source: src}}})
	if err != nil {
		t.Fatal(err)
	}
	return res, src
}

func pullAndCompare(t *testing.T, ref, src string) *PullResult {
	t.Helper()
	c := newTestClient(t, Options{})
	r, _ := ParseReference(ref)
	dst := filepath.Join(t.TempDir(), "m")
	res, err := c.Pull(context.Background(), r, dst)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, filepath.Join(dst, "model.onnx.data"))
	return res
}

func TestPushFallsBackWhenChunksRefused(t *testing.T) {
	srv := testenv.StartDistribution(t)
	p := newFaultProxy(t, srv.Addr)
	p.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPatch {
			http.Error(w, `{"errors":[{"code":"UNSUPPORTED","message":"chunked uploads are disabled"}]}`, http.StatusMethodNotAllowed)
			return true
		}
		return false
	}
	c := newTestClient(t, Options{ChunkSize: 4 << 20})
	res, src := pushRandom(t, c, p.addr()+"/nochunks/m:v1", 10<<20+3)
	if res.Files[0].Status != StatusUploaded || res.Files[0].Transferred != 10<<20+3 {
		t.Errorf("push result %+v", res.Files[0])
	}
	pullAndCompare(t, p.addr()+"/nochunks/m:v1", src)
}

func TestPushHonoursChunkMinLength(t *testing.T) {
	srv := testenv.StartDistribution(t)
	p := newFaultProxy(t, srv.Addr)
	p.setRespHook(func(r *http.Response) {
		if r.Request.Method == http.MethodPost {
			r.Header.Set("OCI-Chunk-Min-Length", fmt.Sprint(12<<20))
		}
	})
	c := newTestClient(t, Options{ChunkSize: 1 << 20})
	_, src := pushRandom(t, c, p.addr()+"/minchunk/m:v1", 30<<20)
	want := []int64{12 << 20, 12 << 20, 6 << 20}
	if fmt.Sprint(p.patchSizes) != fmt.Sprint(want) {
		t.Errorf("PATCH sizes %v, want %v", p.patchSizes, want)
	}
	pullAndCompare(t, p.addr()+"/minchunk/m:v1", src)
}

func TestPushRetriesADroppedChunk(t *testing.T) {
	srv := testenv.StartDistribution(t)
	p := newFaultProxy(t, srv.Addr)
	var patches atomic.Int32
	p.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPatch && patches.Add(1) == 2 {
			// Take half the chunk, then drop the connection.
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			panic(http.ErrAbortHandler)
		}
		return false
	}
	c := newTestClient(t, Options{ChunkSize: 4 << 20})
	res, src := pushRandom(t, c, p.addr()+"/retry/m:v1", 12<<20)
	// The dropped chunk is sent again, nothing else (the proxy counts what
	// reached the registry).
	if got := p.bodyBytes.Load(); got != 12<<20 {
		t.Errorf("registry received %d bytes, want %d", got, 12<<20)
	}
	if res.Files[0].Transferred != 12<<20 {
		t.Errorf("transferred %d", res.Files[0].Transferred)
	}
	pullAndCompare(t, p.addr()+"/retry/m:v1", src)
}

// A registry answering a Range request with another range is refused at
// once, not after the whole blob fails its digest.
func TestPullRefusesAnotherRange(t *testing.T) {
	srv := testenv.StartOurs(t)
	c := newTestClient(t, Options{})
	pushRandom(t, c, srv.Addr+"/ranges/m:v1", 80<<20)
	p := newFaultProxy(t, srv.Addr)
	p.setRespHook(func(r *http.Response) {
		if cr := r.Header.Get("Content-Range"); cr != "" && !strings.HasPrefix(cr, "bytes 0-") {
			r.Header.Set("Content-Range", "bytes 0-"+strings.SplitN(cr, "-", 2)[1])
		}
	})
	ref, _ := ParseReference(p.addr() + "/ranges/m:v1")
	_, err := newTestClient(t, Options{}).Pull(context.Background(), ref, filepath.Join(t.TempDir(), "m"))
	if err == nil || !strings.Contains(err.Error(), "the registry sent") {
		t.Fatalf("pull with a registry that sends other ranges: %v", err)
	}
}

func TestPullRetriesTransientErrors(t *testing.T) {
	srv := testenv.StartDistribution(t)
	c := newTestClient(t, Options{})
	_, src := pushRandom(t, c, srv.Addr+"/flaky/m:v1", 80<<20)
	p := newFaultProxy(t, srv.Addr)
	var gets atomic.Int32
	p.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Range") != "" {
			switch gets.Add(1) {
			case 1:
				http.Error(w, "try later", http.StatusServiceUnavailable)
				return true
			case 2:
				// Send a little of the range, then drop the connection.
				w.Header().Set("Content-Length", "1000000")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(make([]byte, 1000))
				panic(http.ErrAbortHandler)
			}
		}
		return false
	}
	res := pullAndCompare(t, p.addr()+"/flaky/m:v1", src)
	if res.Files[0].Transferred < 80<<20 {
		t.Errorf("transferred %d", res.Files[0].Transferred)
	}
}

// pushRaw pushes blobs and a hand-made manifest, as a hostile publisher would.
func pushRaw(t *testing.T, host, repo string, blobs map[digest.Digest][]byte, manifest []byte) {
	t.Helper()
	for d, b := range blobs {
		resp, err := http.Post(fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", host, repo), "", nil)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %v %v", err, resp)
		}
		resp.Body.Close()
		loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		q.Set("digest", d.String())
		loc.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodPut, loc.String(), strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err = http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("push blob: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/v1", host, repo), strings.NewReader(string(manifest)))
	req.Header.Set("Content-Type", manifests.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest: %v %v", err, resp)
	}
	resp.Body.Close()
}

func hostileManifest(t *testing.T, path string, content []byte) (map[digest.Digest][]byte, []byte) {
	d := digest.FromBytes(content)
	cfg := []byte(`{"descriptor":{},"modelfs":{"type":"layers","diffIds":["` + d.String() + `"]},"config":{"format":"onnx"}}`)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},
		"layers":[{"mediaType":%q,"digest":%q,"size":%d,"annotations":{"org.opencontainers.image.title":%q}}]}`,
		manifests.MediaTypeImageManifest, manifests.ArtifactTypeModel, manifests.MediaTypeConfig, digest.FromBytes(cfg), len(cfg),
		manifests.MediaTypeWeightRaw, d, len(content), path)
	return map[digest.Digest][]byte{d: content, digest.FromBytes(cfg): cfg}, []byte(m)
}

func TestPullRefusesHostileManifests(t *testing.T) {
	srv := testenv.StartDistribution(t)
	base := t.TempDir()
	for i, p := range []string{"../escape", "/etc/evil", `..\evil`, "a/../../evil", "C:evil", ".modelctl/receipt.json"} {
		blobs, m := hostileManifest(t, p, []byte("pwned"))
		repo := fmt.Sprintf("hostile/m%d", i)
		pushRaw(t, srv.Addr, repo, blobs, m)
		c := newTestClient(t, Options{})
		ref, _ := ParseReference(srv.Addr + "/" + repo + ":v1")
		target := filepath.Join(base, fmt.Sprint(i), "target")
		_, err := c.Pull(context.Background(), ref, target)
		if !errors.Is(err, manifests.ErrInvalid) {
			t.Errorf("path %q: pull error %v, want ErrInvalid", p, err)
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("path %q: target created", p)
		}
	}
	filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			t.Errorf("a file was written: %s", p)
		}
		return nil
	})
}

func TestPullRefusesSymlinkInTarget(t *testing.T) {
	srv := testenv.StartDistribution(t)
	blobs, m := hostileManifest(t, "sub/model.onnx", []byte("weights"))
	pushRaw(t, srv.Addr, "links/m", blobs, m)
	target := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "sub")); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, Options{})
	ref, _ := ParseReference(srv.Addr + "/links/m:v1")
	_, err := c.Pull(context.Background(), ref, target)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("pull through a planted symlink: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote outside the target: %v", entries)
	}
}

func TestClearErrors(t *testing.T) {
	c := newTestClient(t, Options{})
	ctx := context.Background()
	dead, _ := ParseReference(testenv.FreeAddr(t) + "/m:v1")
	_, err := c.Pull(ctx, dead, t.TempDir())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("connection refused: %v", err)
	}
	srv := testenv.StartDistribution(t)
	missing, _ := ParseReference(srv.Addr + "/nothing/here:v1")
	_, err = c.Pull(ctx, missing, t.TempDir())
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "modelctl ls") {
		t.Errorf("not found: %v", err)
	}
}

func TestLoginLogout(t *testing.T) {
	bin := testenv.Tool(t, "registry")
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o644)
	addr := testenv.FreeAddr(t)
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: %s}}
auth: {htpasswd: {realm: test, path: %s}}
http: {addr: %s, secret: x}
`, filepath.Join(dir, "data"), htpasswd, addr)), 0o644)
	testenv.Start(t, addr, "http://%s/v2/", []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfg)

	docker := t.TempDir()
	t.Setenv("DOCKER_CONFIG", docker)
	c, err := New(Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "model.onnx")
	writeRandom(t, src, 1000)
	ref, _ := ParseReference(addr + "/private/m:v1")
	push := func(c *Client) error {
		_, err := c.Push(ctx, ref, PushOptions{Files: []PushFile{{Path: "model.onnx", Source: src}}})
		return err
	}
	if err := push(c); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "modelctl login") {
		t.Fatalf("push without credentials: %v", err)
	}
	if err := c.Login(ctx, addr, "alice", "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if err := c.Login(ctx, addr, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(docker, "config.json"))
	if err != nil || !strings.Contains(string(b), addr) {
		t.Fatalf("docker config after login: %s %v", b, err)
	}
	// A fresh client reads the stored credentials.
	c2, _ := New(Options{CacheDir: t.TempDir()})
	if err := push(c2); err != nil {
		t.Fatal(err)
	}
	if err := c2.Logout(ctx, addr); err != nil {
		t.Fatal(err)
	}
	c3, _ := New(Options{CacheDir: t.TempDir()})
	if err := push(c3); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("push after logout: %v", err)
	}
}

// A manifest declaring a layer larger than the disk (1 PiB) is refused
// before anything is planned or fetched: the client neither runs out of
// memory nor asks for a byte of the blob (issue 15, item 2).
func TestPullRefusesALayerLargerThanTheDisk(t *testing.T) {
	cfg := []byte(`{"descriptor":{},"modelfs":{"type":"layers","diffIds":["sha256:` + strings.Repeat("a", 64) + `"]},"config":{"format":"onnx"}}`)
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},
		"layers":[{"mediaType":%q,"digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.title":"model.onnx.data"}}]}`,
		manifests.MediaTypeImageManifest, manifests.ArtifactTypeModel, manifests.MediaTypeConfig, digest.FromBytes(cfg), len(cfg),
		manifests.MediaTypeWeightRaw, strings.Repeat("a", 64), int64(1)<<50)
	var blobGets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.HasSuffix(r.URL.Path, "/manifests/v1"):
			w.Header().Set("Content-Type", manifests.MediaTypeImageManifest)
			w.Header().Set("Docker-Content-Digest", digest.FromString(manifest).String())
			fmt.Fprint(w, manifest)
		case strings.HasSuffix(r.URL.Path, "/blobs/"+digest.FromBytes(cfg).String()):
			w.Write(cfg)
		default:
			blobGets.Add(1)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Options{})
	ref, _ := ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/hostile/huge:v1")
	target := filepath.Join(t.TempDir(), "target")
	_, err := c.Pull(context.Background(), ref, target)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "declares 1.0 PiB") {
		t.Fatalf("pull of a 1 PiB layer: %v; want a disk-space refusal naming the size", err)
	}
	if n := blobGets.Load(); n != 0 {
		t.Fatalf("%d requests for the blob: want none", n)
	}
	if _, err := os.Lstat(filepath.Join(target, "model.onnx.data")); !os.IsNotExist(err) {
		t.Fatalf("target file created: %v", err)
	}
}
