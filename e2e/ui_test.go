package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/registry/auth"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// The web UI, driven in a real headless Chromium (Debian's chromium package,
// which `make tools` installs; mk/ui.mk). Everything shown was made and
// pushed with the real binary against a real `modelctl serve`, and the
// deployments come from two `modelctl sync` runs that stand for two servers.
// With MODELCTL_UI_SCREENSHOTS=DIR the test saves a PNG of every page there
// (docs/ui/ holds the committed ones).

// uiBrowserTimeout bounds the whole browser session: the browser is
// stopped when it runs out.
const uiBrowserTimeout = 3 * time.Minute

// chromiumPath finds the browser `make tools` installs.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run `make tools` (apt-get install chromium)")
	return ""
}

// writeHtpasswd writes user:password pairs as a bcrypt htpasswd file.
func writeHtpasswd(t *testing.T, path string, pairs ...string) {
	t.Helper()
	var lines []string
	for _, p := range pairs {
		u, pw, _ := strings.Cut(p, ":")
		line, err := auth.HashPassword(u, pw)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h *wfHost) login(addr, user, pass string) {
	h.t.Helper()
	cmd := exec.Command(testenv.Modelctl(h.t), "login", addr, "-u", user, "--password-stdin")
	cmd.Dir = h.dir
	cmd.Env = append(os.Environ(), h.env...)
	cmd.Stdin = strings.NewReader(pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("modelctl login %s -u %s: %v\n%s", addr, user, err, out)
	}
}

// uiXSS is an annotation value an attacker who can push would try: if the
// page ran it, the title would change.
const uiXSS = `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`

// uiModels are a workstation's models for the UI: an FP32 model, two INT8
// versions of it (per-tensor and per-channel), each benchmarked against it.
type uiModels struct {
	fp32, int8a, int8b    string
	benchA, benchB        string
	keyPrefix             string
	fp32Size2, int8bSize2 string
}

func makeUIModels(t *testing.T, ws *wfHost) uiModels {
	t.Helper()
	ortLib := filepath.Join(testenv.Root(t), ".cache", "onnxruntime-1.30.0", "linux-x64", "libonnxruntime.so.1")
	if _, err := os.Stat(ortLib); err != nil {
		t.Fatalf("onnxruntime is not installed at %s: run `make ort` first", ortLib)
	}
	ws.run("synth", "-o", "fp32", "--size", "2MiB", "--seed", "3", "--name", "audio.onnx")
	m := uiModels{fp32: ws.path("fp32/audio.onnx"), int8a: ws.path("int8a/audio_int8.onnx"), int8b: ws.path("int8b/audio_int8.onnx")}
	ws.run("quantize", m.fp32, "-o", m.int8a)
	ws.run("quantize", m.fp32, "-o", m.int8b, "--per-channel")
	for i, model := range []string{m.int8a, m.int8b} {
		out := ws.run("bench", model, "--baseline", m.fp32, "--json", "--shape", "input=1x8x256",
			"--warmup", "1", "--runs", "3", "--threads", "1", "--provider", "cpu", "--ort-lib", ortLib)
		var report map[string]any
		if err := json.Unmarshal([]byte(out), &report); err != nil {
			t.Fatalf("bench: %v\n%s", err, out)
		}
		// Whoever pushes writes the annotations: this one tries a script.
		report["note"] = uiXSS
		b, _ := json.Marshal(report)
		path := ws.path(fmt.Sprintf("bench-%d.json", i))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			m.benchA = path
		} else {
			m.benchB = path
		}
	}
	m.keyPrefix = ws.path("signer")
	ws.run("keygen", m.keyPrefix)
	return m
}

func TestUIInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	ws := newWFHost(t, "workstation")
	models := makeUIModels(t, ws)

	// A registry with users and a policy: alice may only pull team/**,
	// the deployer pulls and reports there, admin does everything.
	dir := t.TempDir()
	htpasswd, policy := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "policy.yaml")
	writeHtpasswd(t, htpasswd, "admin:admin-pw", "alice:alice-pw", "deployer:deployer-pw")
	if err := os.WriteFile(policy, []byte(`rules:
  - repositories: ["**"]
    users: [admin]
    actions: ["*"]
  - repositories: ["team/**"]
    users: [deployer]
    actions: [pull, push]
  - repositories: ["team/**"]
    users: [alice]
    actions: [pull]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartServe(t, nil, "--root", filepath.Join(dir, "data"), "--htpasswd", htpasswd, "--auth-policy", policy, "--log-level", "warn")
	addr := srv.Addr
	repo := addr + "/team/audio-core"

	// The workstation pushes FP32, INT8 with its bench and parent, signs it.
	ws.login(addr, "admin", "admin-pw")
	ws.run("push", models.fp32, repo+":fp32", "--precision", "fp32")
	var pushed struct {
		Digest string `json:"digest"`
	}
	ws.runJSON(&pushed, "push", models.int8a, repo+":int8", "--bench", models.benchA, "--parent", repo+":fp32", "--precision", "int8", "--quantization", "dynamic")
	v1 := pushed.Digest
	ws.run("sign", repo+":int8", "--key", models.keyPrefix+".key")
	ws.run("push", models.fp32, addr+"/secret/model:v1")

	// Two servers sync v1.
	cfgText := "audio_omni:\n  model_path: \"models/audio_int8.onnx\"\n"
	servers := map[string]*wfHost{}
	for _, name := range []string{"server-a", "server-b"} {
		h := newWFHost(t, name)
		h.login(addr, "deployer", "deployer-pw")
		if err := os.WriteFile(h.path("app.yaml"), []byte(cfgText), 0o644); err != nil {
			t.Fatal(err)
		}
		h.run("pin", "app.yaml", "--key", "audio_omni", repo+":int8")
		if _, errOut, code := h.try("sync", "app.yaml", "--report-host", name); code != 0 || strings.Contains(errOut, "not reported") {
			t.Fatalf("sync on %s: exit %d\n%s", name, code, errOut)
		}
		servers[name] = h
	}
	serverA, serverB := servers["server-a"], servers["server-b"]

	// A per-channel v2 moves the tag. Server B updates to it and its
	// service passes the health check.
	ws.runJSON(&pushed, "push", models.int8b, repo+":int8", "-t", "int8-pc", "--bench", models.benchB, "--parent", repo+":fp32", "--precision", "int8", "--quantization", "dynamic", "--quant-param", "per_channel=true")
	v2 := pushed.Digest
	if v2 == v1 {
		t.Fatal("the per-channel model has the per-tensor model's digest")
	}
	if _, errOut, code := serverB.try("sync", "app.yaml", "--update", "--report-host", "server-b", "--health", "true"); code != 0 || strings.Contains(errOut, "not reported") {
		t.Fatalf("sync --update on server-b: exit %d\n%s", code, errOut)
	}
	// Server A's service fails its health check with v2: sync switches back
	// to v1, exits 1, and reports v1 with the reason.
	if _, errOut, code := serverA.try("sync", "app.yaml", "--update", "--report-host", "server-a", "--health", "false", "--health-timeout", "1s"); code == 0 || strings.Contains(errOut, "not reported") {
		t.Fatalf("sync --update on server-a with a failing health check: exit %d, want 1, with a report\n%s", code, errOut)
	}
	// Then int8 is rolled back to v1, as during an incident.
	ws.run("rollback", repo+":int8")

	// history --deployments tells which host runs which digest.
	out := serverA.run("history", repo+":int8", "--deployments")
	t.Logf("modelctl history --deployments:\n%s", out)
	for _, want := range []string{"server-a", "server-b", v1[:19], v2[:19], "audio_omni", "installed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history --deployments lacks %q:\n%s", want, out)
		}
	}
	var targets []struct {
		Host     string `json:"host"`
		Digest   string `json:"digest"`
		User     string `json:"user"`
		Status   string `json:"status"`
		Health   string `json:"health"`
		Detail   string `json:"detail"`
		Previous []struct {
			Digest string `json:"digest"`
		} `json:"previous"`
	}
	serverB.runJSON(&targets, "history", repo+":int8", "--deployments")
	if len(targets) != 2 || targets[1].Host != "server-b" || targets[1].Digest != v2 || targets[1].User != "deployer" || targets[1].Health != "passed" ||
		len(targets[1].Previous) != 1 || targets[1].Previous[0].Digest != v1 {
		t.Fatalf("history --deployments --json: %+v", targets)
	}
	if a := targets[0]; a.Host != "server-a" || a.Digest != v1 || a.Status != "rolled back" || a.Health != "failed" ||
		!strings.Contains(a.Detail, "health failed") || len(a.Previous) != 1 || a.Previous[0].Digest != v1 {
		t.Fatalf("server-a after its failed update: %+v", a)
	}
	// A sync by a user who may not report still succeeds, with a warning.
	serverC := newWFHost(t, "server-c")
	serverC.login(addr, "alice", "alice-pw")
	if err := os.WriteFile(serverC.path("app.yaml"), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	serverC.run("pin", "app.yaml", "--key", "audio_omni", repo+":int8")
	_, errOut, code := serverC.try("sync", "app.yaml", "--report-host", "server-c")
	if code != 0 || !strings.Contains(errOut, "deployment not reported") {
		t.Fatalf("sync by a pull-only user: exit %d, want 0 with a warning\n%s", code, errOut)
	}

	runUIBrowser(t, browser, "http://"+addr, v1, v2)
}

// runUIBrowser logs in as alice and walks every page.
func runUIBrowser(t *testing.T, browser, base, v1, v2 string) {
	shots := os.Getenv("MODELCTL_UI_SCREENSHOTS")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	bounded, stop := context.WithTimeout(context.Background(), uiBrowserTimeout)
	defer stop()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancel()

	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		step("text of "+sel, err)
		return s
	}
	eval := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		step(js, err)
		return n
	}
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		step("screenshot "+name, err)
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clickAndLoad := func(sel string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel))))
		step("click "+sel, err)
	}
	noScripts := func(where string) {
		t.Helper()
		if n := eval(`document.scripts.length`); n != 0 {
			t.Fatalf("%s: %d script elements on the page", where, n)
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		step("title", err)
		if strings.Contains(title, "pwned") {
			t.Fatalf("%s: an annotation's script ran", where)
		}
	}

	// Anonymous: nothing is listed; a repository page leads to the login.
	step("open", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")))
	if s := text("#empty"); !strings.Contains(s, "No repositories") {
		t.Fatalf("anonymous repository list: %q", s)
	}
	step("open repository", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/r/team/audio-core")))
	step("login form", chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("login-submit"))))
	step("fill", chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("user-field"), "alice"),
		chromedp.SendKeys(chromedp.ID("password-field"), "wrong")))
	clickAndLoad("#login-submit")
	if s := text("#login-error"); !strings.Contains(s, "Invalid user name or password") {
		t.Fatalf("wrong password: %q", s)
	}
	step("refill", chromedp.Do(ctx,
		chromedp.Clear(chromedp.ID("user-field")),
		chromedp.SendKeys(chromedp.ID("user-field"), "alice"),
		chromedp.SendKeys(chromedp.ID("password-field"), "alice-pw")))
	shot("login")
	clickAndLoad("#login-submit")

	// The login went back to the repository page asked for.
	step("repository page", chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("tags"))))
	if u := text("#user"); u != "alice" {
		t.Fatalf("logged in as %q", u)
	}
	// Three versions have a size; the two INT8 ones a latency (the FP32
	// model was pushed without a bench report).
	if n := eval(`document.querySelectorAll("#panel-size circle.pt").length`); n != 3 {
		t.Fatalf("chart: %d size points, want 3", n)
	}
	if n := eval(`document.querySelectorAll("#panel-latency circle.pt").length`); n != 2 {
		t.Fatalf("chart: %d latency points, want 2", n)
	}
	if n := eval(`document.querySelectorAll("#chart polyline").length`); n != 2 {
		t.Fatalf("chart: %d lines, want 2", n)
	}
	tags := text("#tags tbody")
	for _, want := range []string{"fp32", "int8", "int8-pc", v1[:19], v2[:19], "1 signature", "unsigned", "passed", "1 host"} {
		if !strings.Contains(tags, want) {
			t.Fatalf("tags table lacks %q:\n%s", want, tags)
		}
	}
	noScripts("repository page")
	shot("repository")

	// The repository list shows only what alice may pull.
	step("home", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")))
	list := text("#repositories")
	if !strings.Contains(list, "team/audio-core") || strings.Contains(list, "secret/model") {
		t.Fatalf("alice's repository list:\n%s", list)
	}
	shot("repositories")
	step("hidden repository", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/r/secret/model")))
	if s := text("#error"); !strings.Contains(s, "no such repository") {
		t.Fatalf("secret/model for alice: %q", s)
	}

	// The INT8 artifact: files, bench, parent, signature, history, hosts;
	// the hostile annotation is text.
	step("repository again", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/r/team/audio-core")))
	clickAndLoad(`tr[data-tag="int8"] a.digest`)
	if d := text("#artifact-digest"); d != v1 {
		t.Fatalf("artifact page of int8 shows %q, want %s (after the rollback)", d, v1)
	}
	for sel, wants := range map[string][]string{
		"#files":                {"audio_int8.onnx", "audio_int8.onnx.data"},
		"#bench":                {"latency_ms.p50", "gates", "passed"},
		"#parent":               {"team/audio-core@sha256:", "(fp32)"},
		"#signatures":           {"sha256:"},
		"table.history":         {"rollback", "admin"},
		"#artifact-deployments": {"server-a"},
		"#annotations":          {`<script>document.title="pwned"</script>`, "dev.modelctl.bench.note"},
	} {
		s := text(sel)
		for _, w := range wants {
			if !strings.Contains(s, w) {
				t.Fatalf("%s lacks %q:\n%s", sel, w, s)
			}
		}
	}
	if n := eval(`document.querySelectorAll("#annotations img, #annotations script").length`); n != 0 {
		t.Fatalf("the annotation became %d elements", n)
	}
	noScripts("artifact page")
	shot("artifact")

	// The FP32 parent lists both INT8 versions as children.
	clickAndLoad("#parent a")
	children := text("#children")
	if !strings.Contains(children, v1[:19]) || !strings.Contains(children, v2[:19]) {
		t.Fatalf("children of fp32:\n%s", children)
	}

	// Compare: choose the versions in the form.
	step("repository for compare", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/r/team/audio-core")))
	step("choose", chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("cmp-a"), "int8"),
		chromedp.SetValue(chromedp.ID("cmp-b"), "int8-pc")))
	clickAndLoad("#cmp-go")
	fig := text("#compare-figures")
	for _, w := range []string{v1, v2, "p50 latency", "worst cosine", "int8"} {
		if !strings.Contains(fig, w) {
			t.Fatalf("compare figures lack %q:\n%s", w, fig)
		}
	}
	if files := text("#compare-files"); !strings.Contains(files, "audio_int8.onnx.data") || !strings.Contains(files, "differs") {
		t.Fatalf("compare files:\n%s", files)
	}
	if bench := text("#compare-bench"); !strings.Contains(bench, "quality_worst.cosine") {
		t.Fatalf("compare bench:\n%s", bench)
	}
	noScripts("compare page")
	shot("compare")

	// Deployments: two hosts on two digests.
	step("repository for deployments", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/r/team/audio-core")))
	clickAndLoad("#deployments-link")
	byDigest := text("#by-digest")
	rows := text("#deployments")
	for _, w := range []string{v1[:19], v2[:19], "server-a", "server-b"} {
		if !strings.Contains(byDigest, w) {
			t.Fatalf("deployments by digest lack %q:\n%s", w, byDigest)
		}
	}
	for _, w := range []string{"app.yaml", "audio_omni", "deployer", "installed", "rolled back", "health failed", "1 earlier"} {
		if !strings.Contains(rows, w) {
			t.Fatalf("deployments lack %q:\n%s", w, rows)
		}
	}
	if a, b := text(`tr[data-host="server-a"] a.digest`), text(`tr[data-host="server-b"] a.digest`); a == b {
		t.Fatalf("server-a and server-b show one digest %q", a)
	}
	shot("deployments")

	// Log out: the session is gone.
	clickAndLoad("#logout")
	step("logged out", chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("login-link"))))
}

// TestUIOnS3: the pages and the deployment reports work on S3 storage
// (versitygw), through the same binary.
func TestUIOnS3(t *testing.T) {
	gw := s3test.Start(t)
	srv := s3Serve(t, gw, "")
	addr := srv.Addr
	ws := newWFHost(t, "workstation")
	ws.run("synth", "-o", "m", "--size", "512KiB", "--seed", "5", "--name", "m.onnx")
	var pushed struct {
		Digest string `json:"digest"`
	}
	ws.runJSON(&pushed, "push", ws.path("m/m.onnx"), addr+"/s3/model:v1", "--precision", "fp32")
	host := newWFHost(t, "host")
	if err := os.WriteFile(host.path("app.yaml"), []byte("m:\n  model_path: \"models/m.onnx\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host.run("pin", "app.yaml", "--key", "m", addr+"/s3/model:v1")
	_, errOut, code := host.try("sync", "app.yaml", "--report-host", "s3-host")
	if code != 0 || strings.Contains(errOut, "not reported") {
		t.Fatalf("sync: exit %d\n%s", code, errOut)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	for path, wants := range map[string][]string{
		"/ui/":                                {`href="/ui/r/s3/model"`},
		"/ui/r/s3/model":                      {`data-tag="v1"`, pushed.Digest[:19], `<svg id="chart"`, "fp32", "1 host"},
		"/ui/r/s3/model/-/a/" + pushed.Digest: {"m.onnx.data", "s3-host"},
		"/ui/r/s3/model/-/deployments":        {`data-host="s3-host"`, "app.yaml"},
	} {
		page := get(path)
		for _, w := range wants {
			if !strings.Contains(page, w) {
				t.Fatalf("%s lacks %q:\n%s", path, w, page)
			}
		}
	}
	if out := host.run("history", addr+"/s3/model:v1", "--deployments"); !strings.Contains(out, "s3-host") {
		t.Fatalf("history --deployments:\n%s", out)
	}
}

// TestUIFlag: / leads to the UI, and --ui=false turns it off while the
// registry API stays.
func TestUIFlag(t *testing.T) {
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	status := func(url string) (int, string) {
		t.Helper()
		resp, err := noFollow.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	on := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn")
	if code, loc := status("http://" + on.Addr + "/"); code != http.StatusFound || loc != "/ui/" {
		t.Fatalf("GET / with the UI: %d %q, want a redirect to /ui/", code, loc)
	}
	if code, _ := status("http://" + on.Addr + "/ui/"); code != http.StatusOK {
		t.Fatalf("GET /ui/: %d", code)
	}
	off := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn", "--ui=false")
	for _, p := range []string{"/", "/ui/"} {
		if code, _ := status("http://" + off.Addr + p); code != http.StatusNotFound {
			t.Fatalf("GET %s with --ui=false: %d, want 404", p, code)
		}
	}
	if code, _ := status("http://" + off.Addr + "/v2/"); code != http.StatusOK {
		t.Fatalf("GET /v2/ with --ui=false: %d", code)
	}
}
