package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/internal/testenv"
)

// The server half of the workflow as an operator meets it (issue 14): the
// application runs in ~/app, reads config/app.yaml and opens model_path
// relative to ~/app.

// srvHost is a server host whose application lives in dir/app.
type srvHost struct {
	*wfHost
	app string
}

func newSrvHost(t *testing.T) *srvHost {
	h := &srvHost{wfHost: newWFHost(t, "server")}
	h.app = h.path("app")
	if err := os.MkdirAll(filepath.Join(h.app, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// in runs modelctl in dir (relative to the host's home).
func (h *srvHost) in(dir string, args ...string) (string, string, int) {
	h.t.Helper()
	return h.tryIn(filepath.Join(h.dir, filepath.FromSlash(dir)), nil, args...)
}

func (h *srvHost) mustIn(dir string, args ...string) string {
	h.t.Helper()
	out, errOut, code := h.in(dir, args...)
	if code != 0 {
		h.t.Fatalf("modelctl %s (in %s): exit %d\n%s\n%s", strings.Join(args, " "), dir, code, out, errOut)
	}
	return out
}

func (h *srvHost) writeConfig(ref string, extra string) string {
	h.t.Helper()
	cfg := filepath.Join(h.app, "config", "app.yaml")
	body := "# the application's settings\nport: 8080\naudio:\n  name: \"audio\"\n  model_path: \"models/audio.onnx\"\n  artifact: \"" + ref + "\"\n" + extra
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

func pinnedDigest(t *testing.T, cfg string) string {
	t.Helper()
	c, err := pin.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Section("audio")
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Digest)
}

// srvModels are two versions of a small FP32 model with external data,
// pushed by a workstation; v1 and v2 both take the application's input
// (1x8x64), bad takes a wider one (its input is 1x8x128), so the
// application cannot run it.
type srvModels struct {
	ws           *wfHost
	v1, v2, bad  string // model paths
	dv1, dv2, db string // pushed digests
}

func makeSrvModels(t *testing.T, repo string) *srvModels {
	ws := newWFHost(t, "workstation")
	m := &srvModels{ws: ws}
	for _, v := range []struct {
		name, seed, hidden string
		path, dig          *string
	}{{"v1", "1", "64", &m.v1, &m.dv1}, {"v2", "2", "64", &m.v2, &m.dv2}, {"bad", "3", "128", &m.bad, &m.db}} {
		ws.run("synth", "-o", v.name, "--size", "6MiB", "--hidden", v.hidden, "--seed", v.seed, "--name", "audio.onnx")
		*v.path = ws.path(v.name + "/audio.onnx")
		var res struct {
			Digest string `json:"digest"`
		}
		ws.runJSON(&res, "push", *v.path, repo+":"+v.name)
		*v.dig = res.Digest
	}
	return m
}

// newSrvScene starts a registry holding the three models, with int8
// pointing at v1, and a server host to sync them on.
func newSrvScene(t *testing.T) (*testenv.Process, string, *srvModels, *srvHost) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	m := makeSrvModels(t, repo)
	m.retag(repo, "v1", "int8")
	return srv, repo, m, newSrvHost(t)
}

// retag points tag at what from names (a push of the same model).
func (m *srvModels) retag(repo, from, tag string) {
	m.ws.run("tag", repo+":"+from, tag)
}

// Problem 1: with the registry stopped, rollback CONFIG goes back to the
// previous model from the local cache and the pin history, every byte
// verified, and says the registry was not consulted; verify agrees.
func TestServerRollbackWithRegistryDown(t *testing.T) {
	srv, repo, m, h := newSrvScene(t)
	cfg := h.writeConfig(repo+":int8", "")
	h.mustIn("app", "sync", "config/app.yaml", "--update")
	m.retag(repo, "v2", "int8")
	out := h.mustIn("app", "sync", "config/app.yaml", "--update")
	if pinnedDigest(t, cfg) != m.dv2 || !strings.Contains(out, "updated") {
		t.Fatalf("update to v2: %s", out)
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")

	srv.Kill() // an incident: the registry is gone
	start := time.Now()
	out = h.mustIn("app", "rollback", "config/app.yaml")
	took := time.Since(start)
	t.Logf("rollback with the registry down: %s\n%s", took, out)
	if !strings.Contains(out, "registry was not consulted") || !strings.Contains(out, "rolled back") {
		t.Fatalf("rollback output: %s", out)
	}
	if pinnedDigest(t, cfg) != m.dv1 {
		t.Fatalf("pin after rollback: %s, want v1 %s", pinnedDigest(t, cfg), m.dv1)
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")
	if out := h.mustIn("app", "verify", "config/app.yaml"); !strings.Contains(out, "registry was not consulted") {
		t.Fatalf("verify with the registry down: %s", out)
	}
	// A second rollback has nothing earlier than v1 here.
	if _, errOut, code := h.in("app", "rollback", "config/app.yaml"); code == 0 || !strings.Contains(errOut, "no section has an earlier pin") && !strings.Contains(errOut, "no earlier digest") {
		t.Fatalf("second rollback: exit %d: %s", code, errOut)
	}
	// Setting the pin by hand to v2 and syncing works offline too.
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, bytes.Replace(b, []byte(m.dv1), []byte(m.dv2), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out = h.mustIn("app", "sync", "config/app.yaml")
	if !strings.Contains(out, "registry was not consulted") {
		t.Fatalf("offline sync: %s", out)
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")
	// --update needs the registry, and says what works without it.
	if _, errOut, code := h.in("app", "sync", "config/app.yaml", "--update"); code == 0 || !strings.Contains(errOut, "from the local cache") {
		t.Fatalf("sync --update with the registry down: exit %d: %s", code, errOut)
	}
}

// Problem 2: paths follow the application, not the shell.
func TestServerPathsFollowTheApplication(t *testing.T) {
	_, repo, m, h := newSrvScene(t)
	cfg := h.writeConfig(repo+":int8", "")
	h.mustIn("app", "pin", "config/app.yaml", "--key", "audio", repo+":int8")
	h.mustIn("app", "sync", "config/app.yaml")
	m.retag(repo, "v2", "int8")

	// From ~: refused with the fix, nothing installed under ~, pin kept.
	_, errOut, code := h.in(".", "sync", "app/config/app.yaml", "--update")
	if code == 0 || !strings.Contains(errOut, "-C "+h.app) || !strings.Contains(errOut, "app_dir") {
		t.Fatalf("sync from ~: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(h.path("models")); !os.IsNotExist(err) {
		t.Fatalf("a second install appeared under ~: %v", err)
	}
	if pinnedDigest(t, cfg) != m.dv1 {
		t.Fatal("the pin moved although nothing was installed")
	}
	if _, _, code := h.in(".", "verify", "app/config/app.yaml"); code == 0 {
		t.Fatal("verify from ~ said ok")
	}
	// -C names the application's directory.
	h.mustIn(".", "sync", "-C", "app", "app/config/app.yaml", "--update")
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")
	h.mustIn(".", "verify", "-C", "app", "app/config/app.yaml")
	// app_dir in the section does it for every command, from anywhere.
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, append(b, []byte("  app_dir: \"..\"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustIn(".", "verify", "app/config/app.yaml")
	h.mustIn("/", "verify", cfg)
}

// Problem 3: bytes already in place are adopted (not downloaded), other
// bytes are moved aside and reported, never lost.
func TestServerAdoptsOrKeepsFilesInPlace(t *testing.T) {
	_, repo, m, h := newSrvScene(t)
	h.writeConfig(repo+":int8", "")
	models := filepath.Join(h.app, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		t.Fatal(err)
	}
	// Copied by hand earlier: the right data file, and a graph edited by hand.
	data := wfReadFile(t, m.v1+".data")
	if err := os.WriteFile(filepath.Join(models, "audio.onnx.data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(models, "audio.onnx"), []byte("a graph edited by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := h.in("app", "sync", "config/app.yaml", "--update", "--json")
	if code != 0 {
		t.Fatalf("sync: exit %d: %s", code, out)
	}
	var res []pin.SyncResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	r := res[0]
	if len(r.Adopted) != 1 || !strings.HasSuffix(r.Adopted[0], "audio.onnx.data") {
		t.Fatalf("adopted %v", r.Adopted)
	}
	if r.Transferred >= int64(len(data)) {
		t.Fatalf("transferred %d bytes: the data file in place was downloaded again", r.Transferred)
	}
	if len(r.Kept) != 1 || !bytes.Equal(wfReadFile(t, r.Kept[0]), []byte("a graph edited by hand")) {
		t.Fatalf("kept %v", r.Kept)
	}
	wfSameBytes(t, models, filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")
	h.mustIn("app", "verify", "config/app.yaml")
}

// Problem 4: a pull or sync that fails at any point leaves every file of
// the target as it was: a refused path found after the model files were
// ready (the target's .modelctl is a link), a registry that goes away (a
// digest mismatch and a full disk: below and in server_linux_test.go).
func TestServerFailedInstallLeavesTheTarget(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	m := makeSrvModels(t, repo)
	h := newSrvHost(t)

	// A refused path: .modelctl is a link planted in the target.
	target := h.path("pulled")
	h.run("pull", repo+":v1", "-o", target)
	elsewhere := t.TempDir()
	if err := os.RemoveAll(filepath.Join(target, ".modelctl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(target, ".modelctl")); err != nil {
		t.Fatal(err)
	}
	before := treeOf(t, target)
	_, errOut, code := h.try("pull", repo+":v2", "-o", target)
	if code == 0 || !strings.Contains(errOut, "symbolic link") {
		t.Fatalf("pull through a linked .modelctl: exit %d: %s", code, errOut)
	}
	if after := treeOf(t, target); after != before {
		t.Fatalf("a failed pull changed the target:\nbefore %s\nafter  %s", before, after)
	}

	// The registry goes away before v2's blobs are fetched (a network
	// drop): the target stays v1.
	cfg := h.writeConfig(repo+":v1", "")
	h.mustIn("app", "sync", "config/app.yaml", "--update")
	before = treeOf(t, filepath.Join(h.app, "models"))
	b, _ := os.ReadFile(cfg)
	_ = os.WriteFile(cfg, bytes.Replace(b, []byte(m.dv1), []byte(m.dv2), 1), 0o644)
	srv.Kill()
	if _, _, code := h.in("app", "sync", "config/app.yaml"); code == 0 {
		t.Fatal("sync of an uncached digest with the registry down succeeded")
	}
	if after := treeOf(t, filepath.Join(h.app, "models")); after != before {
		t.Fatalf("a sync that could not fetch changed the target:\nbefore %s\nafter  %s", before, after)
	}
}

// treeOf describes every entry under dir (names, sizes, link targets,
// content hashes of small files).
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s; ", rel, l)
		case fi.IsDir():
			fmt.Fprintf(&b, "%s/; ", rel)
		default:
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %d %x; ", rel, fi.Size(), c[:min(len(c), 64)])
		}
		return nil
	})
	return b.String()
}

// buildAppsvc builds the test application (it loads models through
// onnxruntime, so with cgo) and returns its path and the environment that
// finds onnxruntime.
func buildAppsvc(t *testing.T) (string, []string) {
	t.Helper()
	lib := filepath.Join(testenv.Root(t), ".cache", "onnxruntime-1.30.0", "linux-x64", "libonnxruntime.so.1")
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("onnxruntime is not installed at %s: run `make ort` first", lib)
	}
	bin := filepath.Join(t.TempDir(), "appsvc")
	cmd := exec.Command("go", "build", "-o", bin, "./e2e/testdata/appsvc")
	cmd.Dir = testenv.Root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build appsvc: %v\n%s", err, out)
	}
	return bin, []string{"ONNXRUNTIME_LIB=" + lib}
}

// Problem 5: sync restarts the application and checks its health; a
// model the application cannot run is switched back automatically: the
// application serves v1 again and the YAML holds v1's digest.
func TestServerRestartHealthRollsBack(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	m := makeSrvModels(t, repo)
	m.retag(repo, "v1", "int8")
	appsvc, env := buildAppsvc(t)
	h := newSrvHost(t)
	h.env = append(h.env, env...)
	restart := filepath.Join(h.app, "restart.sh")
	script := `#!/bin/sh
# stop the running application, start it again in the background
if [ -f run/pid ]; then kill "$(cat run/pid)" 2>/dev/null; sleep 0.2; fi
rm -f run/port run/pid
mkdir -p run
nohup "` + appsvc + `" serve -config config/app.yaml -key audio -state run -shape 1x8x64 >run/app.log 2>&1 &
echo "started $!"
`
	if err := os.WriteFile(restart, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(h.app, "run", "pid")); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	})
	// The service commands live in the section: cron needs no flags.
	cfg := h.writeConfig(repo+":int8", "  restart: \"sh restart.sh\"\n  health: \""+appsvc+" probe -state run\"\n  health_timeout: 15s\n")
	out := h.mustIn("app", "sync", "config/app.yaml", "--update")
	if !strings.Contains(out, "healthy") || pinnedDigest(t, cfg) != m.dv1 {
		t.Fatalf("first sync: %s", out)
	}
	probe := func() string {
		t.Helper()
		cmd := exec.Command(appsvc, "probe", "-state", "run")
		cmd.Dir = h.app
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the application does not answer: %v: %s", err, b)
		}
		return string(b)
	}
	if got := probe(); !strings.Contains(got, m.dv1) {
		t.Fatalf("application serves %q, want v1", got)
	}

	// A model the application cannot run: rolled back automatically.
	m.retag(repo, "bad", "int8")
	stdout, stderr, code := h.in("app", "sync", "config/app.yaml", "--update")
	t.Logf("sync to a broken model: exit %d\n%s\n%s", code, stdout, stderr)
	if code == 0 {
		t.Fatal("sync to a model the application cannot run exited 0")
	}
	for _, want := range []string{"health with the new model", "does not run", "health after switching back", "ok models/audio.onnx " + m.dv1, "switched back to the previous model, which passes its health check"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if got := pinnedDigest(t, cfg); got != m.dv1 {
		t.Fatalf("YAML holds %s after the automatic rollback, want v1 %s", got, m.dv1)
	}
	if got := probe(); !strings.Contains(got, m.dv1) {
		t.Fatalf("application serves %q after the automatic rollback, want v1", got)
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")
	h.mustIn("app", "verify", "config/app.yaml")

	// v2 is a good model: switched to, restarted, healthy.
	m.retag(repo, "v2", "int8")
	out = h.mustIn("app", "sync", "config/app.yaml", "--update")
	if pinnedDigest(t, cfg) != m.dv2 || !strings.Contains(probe(), m.dv2) {
		t.Fatalf("update to v2: %s", out)
	}

	// And back to v1 by hand, with the registry down, restarting too.
	srv.Kill()
	out = h.mustIn("app", "rollback", "config/app.yaml")
	if pinnedDigest(t, cfg) != m.dv1 || !strings.Contains(probe(), m.dv1) || !strings.Contains(out, "healthy") {
		t.Fatalf("rollback to v1: %s", out)
	}
}

// startCorruptingProxy forwards to target and flips one byte in the middle
// of every large blob it sends back: a registry (or a network) that
// delivers the wrong bytes.
func startCorruptingProxy(t *testing.T, target string) string {
	return startBlobProxy(t, target, func(body io.ReadCloser, size int64) io.ReadCloser {
		return &flipper{r: body, at: size / 2}
	})
}

// startBlobProxy forwards to target, passing the body of every blob
// response over 1 MiB through wrap.
func startBlobProxy(t *testing.T, target string, wrap func(body io.ReadCloser, size int64) io.ReadCloser) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/blobs/") && resp.ContentLength > 1<<20 {
			resp.Body = wrap(resp.Body, resp.ContentLength)
		}
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

type flipper struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipper) Close() error { return f.r.Close() }

// A digest mismatch (the bytes that arrive are not the layer's) fails the
// sync before any file of the target is touched, and the pin stays.
func TestServerDigestMismatchLeavesTheTarget(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	m := makeSrvModels(t, srv.Addr+"/sarai/audio")
	bad := startCorruptingProxy(t, srv.Addr)
	h := newSrvHost(t)
	cfg := h.writeConfig(srv.Addr+"/sarai/audio:v1", "")
	h.mustIn("app", "sync", "config/app.yaml", "--update")
	before := treeOf(t, filepath.Join(h.app, "models"))
	// The same repository, reached through the corrupting proxy.
	h.writeConfig(bad+"/sarai/audio:v2", "")
	b, _ := os.ReadFile(cfg)
	_ = os.WriteFile(cfg, bytes.Replace(b, []byte("artifact: \""+bad+"/sarai/audio:v2\"\n"), []byte("artifact: \""+bad+"/sarai/audio:v2\"\n  artifact_digest: \""+m.dv2+"\"\n"), 1), 0o644)
	_, errOut, code := h.in("app", "sync", "config/app.yaml")
	if code == 0 || !strings.Contains(errOut, "digest mismatch") {
		t.Fatalf("sync through a corrupting proxy: exit %d: %s", code, errOut)
	}
	if after := treeOf(t, filepath.Join(h.app, "models")); after != before {
		t.Fatalf("a digest mismatch changed the target:\nbefore %s\nafter  %s", before, after)
	}
	if pinnedDigest(t, cfg) != m.dv2 {
		t.Fatal("the pin was rewritten")
	}
}

// startDroppingProxy forwards to target but cuts every large blob
// response after 64 KiB and drops the connection: a network that fails in
// the middle of every transfer.
func startDroppingProxy(t *testing.T, target string) string {
	return startBlobProxy(t, target, func(body io.ReadCloser, _ int64) io.ReadCloser {
		return &cutter{r: body, left: 64 << 10}
	})
}

type cutter struct {
	r    io.ReadCloser
	left int64
}

func (c *cutter) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("connection dropped")
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutter) Close() error { return c.r.Close() }

// A network that drops in the middle of every transfer: the sync fails
// after its retries and every file of the target stays as it was.
func TestServerNetworkDropLeavesTheTarget(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	m := makeSrvModels(t, srv.Addr+"/sarai/audio")
	drop := startDroppingProxy(t, srv.Addr)
	h := newSrvHost(t)
	cfg := h.writeConfig(srv.Addr+"/sarai/audio:v1", "")
	h.mustIn("app", "sync", "config/app.yaml", "--update")
	before := treeOf(t, filepath.Join(h.app, "models"))
	h.writeConfig(drop+"/sarai/audio:v2", "  artifact_digest: \""+m.dv2+"\"\n")
	start := time.Now()
	_, errOut, code := h.in("app", "sync", "config/app.yaml")
	t.Logf("sync through a dropping network: exit %d after %s: %s", code, time.Since(start), errOut)
	if code == 0 {
		t.Fatal("sync through a network that drops every transfer succeeded")
	}
	if after := treeOf(t, filepath.Join(h.app, "models")); after != before {
		t.Fatalf("a dropped transfer changed the target:\nbefore %s\nafter  %s", before, after)
	}
	if pinnedDigest(t, cfg) != m.dv2 {
		t.Fatal("the pin was rewritten")
	}
	// Once the network is back, the same sync finishes.
	h.writeConfig(srv.Addr+"/sarai/audio:v2", "  artifact_digest: \""+m.dv2+"\"\n")
	h.mustIn("app", "sync", "config/app.yaml")
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")
}

// Two commands on one config take turns: a sync started while another
// modelctl holds the config's lock waits for it (and says for whom), then
// works on the config as the other left it; one that waits past
// --lock-wait fails without touching the config or the models.
func TestServerSyncsTakeTurns(t *testing.T) {
	_, repo, m, h := newSrvScene(t)
	cfg := h.writeConfig(repo+":int8", "")
	h.mustIn("app", "sync", "config/app.yaml", "--update")
	m.retag(repo, "v2", "int8")

	// Another modelctl (this test, through the same code) holds the lock.
	ctx := t.Context()
	_, release, err := pin.LoadLocked(ctx, cfg, "rollback", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := h.in("app", "sync", "config/app.yaml", "--update", "--lock-wait", "500ms")
	if code == 0 || !strings.Contains(errOut, "another modelctl is working on this config") || !strings.Contains(errOut, "modelctl rollback (pid") {
		t.Fatalf("sync while the lock is held: exit %d: %s", code, errOut)
	}
	if pinnedDigest(t, cfg) != m.dv1 {
		t.Fatal("a sync that did not get the lock moved the pin")
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")

	cmd := exec.Command(testenv.Modelctl(t), "sync", "config/app.yaml", "--update")
	cmd.Dir = h.app
	cmd.Env = append(os.Environ(), h.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("sync ran while the lock was held: %v\n%s\n%s", err, stdout.String(), stderr.String())
	default:
	}
	if pinnedDigest(t, cfg) != m.dv1 {
		t.Fatal("the waiting sync moved the pin before it had the lock")
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sync after the lock was released: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the waiting sync did not finish after the lock was released")
	}
	if !strings.Contains(stderr.String(), "waiting for modelctl rollback (pid") {
		t.Fatalf("the waiting sync did not say what it waited for: %s", stderr.String())
	}
	if pinnedDigest(t, cfg) != m.dv2 {
		t.Fatalf("pin after the waiting sync: %s, want v2 %s", pinnedDigest(t, cfg), m.dv2)
	}
	wfSameBytes(t, filepath.Join(h.app, "models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")
}
