package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// wfHost is one machine of the workflow: its own working directory, cache,
// config and credential directories, and a modelctl process per command.
type wfHost struct {
	t   *testing.T
	dir string
	env []string
}

func newWFHost(t *testing.T, name string) *wfHost {
	dir := filepath.Join(t.TempDir(), name)
	for _, sub := range []string{"cache", "config", "docker"} {
		if err := os.MkdirAll(filepath.Join(dir, ".state", sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := filepath.Join(dir, ".state")
	return &wfHost{t: t, dir: dir, env: []string{
		"MODELCTL_CACHE=" + filepath.Join(st, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(st, "config"),
		"DOCKER_CONFIG=" + filepath.Join(st, "docker"),
	}}
}

// try runs modelctl in the host's directory and returns stdout, stderr
// and the exit status.
func (h *wfHost) try(args ...string) (string, string, int) {
	h.t.Helper()
	return h.tryVia(nil, args...)
}

// tryVia runs modelctl through a launcher (qemu, say) when via is set.
func (h *wfHost) tryVia(via []string, args ...string) (string, string, int) {
	h.t.Helper()
	return h.tryIn(h.dir, via, args...)
}

// tryIn runs modelctl in dir, through via when set, and returns its
// output and exit code.
func (h *wfHost) tryIn(dir string, via []string, args ...string) (string, string, int) {
	h.t.Helper()
	argv := append(append(append([]string(nil), via...), testenv.Modelctl(h.t)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), h.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	h.t.Fatalf("modelctl %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

// run runs modelctl and fails the test unless it exits 0.
func (h *wfHost) run(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.try(args...)
	if code != 0 {
		h.t.Fatalf("modelctl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (h *wfHost) runJSON(v any, args ...string) {
	h.t.Helper()
	out := h.run(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		h.t.Fatalf("modelctl %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (h *wfHost) path(rel string) string { return filepath.Join(h.dir, filepath.FromSlash(rel)) }

func wfReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wfSameBytes requires the files under got and want named in names to be
// byte-identical.
func wfSameBytes(t *testing.T, gotDir, wantDir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if !bytes.Equal(wfReadFile(t, filepath.Join(gotDir, n)), wfReadFile(t, filepath.Join(wantDir, n))) {
			t.Fatalf("%s differs from %s", filepath.Join(gotDir, n), filepath.Join(wantDir, n))
		}
	}
}

// wfModels is what the workstation made once for every registry: two
// INT8 versions of a synthetic FP32 model, each benchmarked against its
// parent with the quality gates.
type wfModels struct {
	ws             *wfHost
	fp32v1, fp32v2 string
	int8v1, int8v2 string
	benchv1        string
	benchv2        string
}

const wfGraph, wfData = "audio_int8.onnx", "audio_int8.onnx.data"

func makeWFModels(t *testing.T) *wfModels {
	ws := newWFHost(t, "workstation")
	ortLib := filepath.Join(testenv.Root(t), ".cache", "onnxruntime-1.30.0", "linux-x64", "libonnxruntime.so.1")
	if _, err := os.Stat(ortLib); err != nil {
		t.Fatalf("onnxruntime is not installed at %s: run `make ort` first", ortLib)
	}
	m := &wfModels{ws: ws}
	for i, seed := range []string{"1", "2"} {
		v := "v" + seed
		// An FP32 model with external data, a few MB so the suite stays fast.
		ws.run("synth", "-o", v+"/fp32", "--size", "4MiB", "--seed", seed, "--name", "audio.onnx")
		fp32 := ws.path(v + "/fp32/audio.onnx")
		if _, err := os.Stat(fp32 + ".data"); err != nil {
			t.Fatalf("synth wrote no external data: %v", err)
		}
		int8 := ws.path(v + "/int8/" + wfGraph)
		ws.run("quantize", fp32, "-o", int8)
		out := ws.run("bench", int8, "--baseline", fp32, "--json", "--shape", "input=1x8x256",
			"--warmup", "1", "--runs", "3", "--threads", "1", "--provider", "cpu", "--ort-lib", ortLib,
			"--min-cosine", "0.99")
		var report struct {
			Gates struct {
				Passed bool `json:"passed"`
			} `json:"gates"`
		}
		if err := json.Unmarshal([]byte(out), &report); err != nil || !report.Gates.Passed {
			t.Fatalf("bench: gates not passed (%v):\n%s", err, out)
		}
		benchFile := ws.path(v + "/bench.json")
		if err := os.WriteFile(benchFile, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			m.fp32v1, m.int8v1, m.benchv1 = fp32, int8, benchFile
		} else {
			m.fp32v2, m.int8v2, m.benchv2 = fp32, int8, benchFile
		}
	}
	return m
}

// TestWorkflow is the whole story of DESIGN.md on a filesystem registry
// and on an S3 one: quantize and bench on a workstation, push with the
// benchmark; on a second host pin, sync, verify; push a new version, sync
// --update; roll back and sync: the old bytes are back; a tampered file
// is caught by verify and by the Go API.
func TestWorkflow(t *testing.T) {
	models := makeWFModels(t)
	t.Run("filesystem", func(t *testing.T) {
		srv := testenv.StartServe(t, nil, "--root", t.TempDir())
		runWorkflow(t, models, srv.Addr)
	})
	t.Run("s3", func(t *testing.T) {
		gw := s3test.Start(t)
		env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey, "AWS_REGION=" + gw.Region}
		srv := testenv.StartServe(t, env, "--storage", "s3://"+gw.Bucket+"/models", "--s3-endpoint", gw.Endpoint)
		runWorkflow(t, models, srv.Addr)
	})
}

type wfSync struct {
	Key         string `json:"key"`
	Digest      string `json:"digest"`
	Previous    string `json:"previous"`
	Status      string `json:"status"`
	Transferred int64  `json:"transferred"`
	Size        int64  `json:"size"`
}

func runWorkflow(t *testing.T, m *wfModels, addr string) {
	ws := m.ws
	repo := addr + "/sarai/audio-core"
	ref := repo + ":int8"

	// Workstation: push FP32 and INT8 v1 with the benchmark and provenance.
	ws.run("push", m.fp32v1, repo+":fp32")
	var pushed struct {
		Digest string `json:"digest"`
	}
	ws.runJSON(&pushed, "push", m.int8v1, ref, "--bench", m.benchv1, "--parent", repo+":fp32")
	v1 := pushed.Digest
	var inspected struct {
		Digest    string            `json:"digest"`
		Benchmark map[string]string `json:"benchmark"`
	}
	ws.runJSON(&inspected, "inspect", ref)
	if inspected.Digest != v1 || len(inspected.Benchmark) == 0 {
		t.Fatalf("inspect %s: digest %s (want %s), benchmark %v", ref, inspected.Digest, v1, inspected.Benchmark)
	}

	// Second host: its own directory, cache and config.
	host := newWFHost(t, "server")
	cfg := "config/sarai.yaml"
	cfgText := `# Sarai: models are pinned by modelctl
server:
  port: 8080

audio_omni:
  name: "Qwen3-Omni-3B-INT8"
  model_path: "models/onnx/` + wfGraph + `"   # the graph; its data sits next to it
  threads: 2
`
	if err := os.MkdirAll(host.path("config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host.path(cfg), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	host.run("pin", cfg, "--key", "audio_omni", ref)
	wantCfg := strings.Replace(cfgText, "   # the graph; its data sits next to it\n",
		"   # the graph; its data sits next to it\n  artifact: \""+ref+"\"\n  artifact_digest: \""+v1+"\"\n", 1)
	if got := string(wfReadFile(t, host.path(cfg))); got != wantCfg {
		t.Fatalf("pinned config:\n%s\nwant:\n%s", got, wantCfg)
	}

	var synced []wfSync
	host.runJSON(&synced, "sync", cfg)
	if len(synced) != 1 || synced[0].Status != "installed" || synced[0].Digest != v1 || synced[0].Transferred != synced[0].Size || synced[0].Size == 0 {
		t.Fatalf("first sync: %+v", synced)
	}
	wfSameBytes(t, host.path("models/onnx"), filepath.Dir(m.int8v1), wfGraph, wfData)
	host.runJSON(&synced, "sync", cfg)
	if synced[0].Status != "up to date" || synced[0].Transferred != 0 {
		t.Fatalf("second sync transferred something: %+v", synced)
	}
	host.run("verify", cfg)

	// Workstation: a new version under the same tag.
	ws.runJSON(&pushed, "push", m.int8v2, ref, "--bench", m.benchv2)
	v2 := pushed.Digest
	if v2 == v1 {
		t.Fatal("v2 has the digest of v1")
	}
	host.runJSON(&synced, "sync", cfg, "--update")
	if synced[0].Digest != v2 || synced[0].Previous != v1 || synced[0].Status != "installed" {
		t.Fatalf("sync --update: %+v", synced)
	}
	if !strings.Contains(string(wfReadFile(t, host.path(cfg))), `artifact_digest: "`+v2+`"`) {
		t.Fatalf("sync --update did not rewrite the pin:\n%s", wfReadFile(t, host.path(cfg)))
	}
	wfSameBytes(t, host.path("models/onnx"), filepath.Dir(m.int8v2), wfGraph, wfData)
	host.run("verify", cfg)

	// Roll the tag back; the history shows both moves; sync follows.
	var hist struct {
		Source string `json:"source"`
		Moves  []struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"history"`
	}
	host.runJSON(&hist, "history", ref)
	if hist.Source != "registry" || len(hist.Moves) < 2 || hist.Moves[len(hist.Moves)-1].From != v1 || hist.Moves[len(hist.Moves)-1].To != v2 {
		t.Fatalf("history before rollback: %+v", hist)
	}
	var rolled struct {
		From, To string
	}
	host.runJSON(&rolled, "rollback", ref)
	if rolled.From != v2 || rolled.To != v1 {
		t.Fatalf("rollback: %+v, want %s -> %s", rolled, v2, v1)
	}
	host.runJSON(&synced, "sync", cfg, "--update")
	if synced[0].Digest != v1 || synced[0].Transferred != 0 {
		t.Fatalf("sync after rollback: %+v (want %s from the cache)", synced, v1)
	}
	wfSameBytes(t, host.path("models/onnx"), filepath.Dir(m.int8v1), wfGraph, wfData)
	host.run("verify", cfg)

	// The application's view: the verified path and digest.
	t.Chdir(host.dir)
	conf, err := pin.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	model, err := conf.Verified(context.Background(), "audio_omni")
	if err != nil {
		t.Fatal(err)
	}
	if string(model.Digest) != v1 || model.Path != filepath.FromSlash("models/onnx/"+wfGraph) || len(model.Files) != 3 { // graph, data, check reference
		t.Fatalf("Verified = %+v", model)
	}

	// Tamper with the weights: verify fails naming the file, and so does
	// the API an application calls at start-up.
	data := host.path("models/onnx/" + wfData)
	if err := os.Chmod(data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 4096); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, errOut, code := host.try("verify", cfg)
	if code == 0 || !strings.Contains(errOut, filepath.Join("models", "onnx", wfData)) || !strings.Contains(errOut, "modified") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("verify of a tampered file: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	_, err = conf.Verified(context.Background(), "audio_omni")
	var ve *pin.VerifyError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Kind != "modified" {
		t.Fatalf("Verified on a tampered file: %v", err)
	}

	// sync repairs it, from the registry (the tampered cache blob is
	// dropped), and verify passes again.
	host.runJSON(&synced, "sync", cfg)
	if synced[0].Status != "installed" {
		t.Fatalf("sync after tampering: %+v", synced)
	}
	host.run("verify", cfg)
	wfSameBytes(t, host.path("models/onnx"), filepath.Dir(m.int8v1), wfGraph, wfData)
}

// TestWorkflowForeignRegistry: against a registry without the history
// extension (CNCF distribution), tag, history and rollback keep the
// history client-side and say so, and sync --update follows a rollback.
func TestWorkflowForeignRegistry(t *testing.T) {
	bin := testenv.Tool(t, "registry")
	addr := testenv.FreeAddr(t)
	conf := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(conf, []byte("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "+t.TempDir()+"\nhttp:\n  addr: "+addr+"\n  secret: modelctl-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, addr, "http://%s/v2/", []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", conf)

	ws := newWFHost(t, "workstation")
	for _, v := range []string{"1", "2"} {
		ws.run("synth", "-o", "v"+v, "--size", "512KiB", "--seed", v, "--name", "m.onnx")
	}
	ref := addr + "/team/m:prod"
	var pushed struct {
		Digest string `json:"digest"`
	}
	ws.runJSON(&pushed, "push", ws.path("v1/m.onnx"), ref)
	v1 := pushed.Digest

	host := newWFHost(t, "server")
	if err := os.WriteFile(host.path("app.yaml"), []byte("m:\n  model_path: models/m.onnx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host.run("pin", "app.yaml", "--key", "m", ref)
	host.run("sync", "app.yaml")
	ws.runJSON(&pushed, "push", ws.path("v2/m.onnx"), ref)
	v2 := pushed.Digest
	host.run("sync", "app.yaml", "--update")

	// The host saw v1 then v2: its client-side history knows both.
	out := host.run("history", ref)
	histFile := filepath.Join(host.dir, ".state", "config", "modelctl", "history")
	if !strings.Contains(out, "keeps no tag history") || !strings.Contains(out, histFile) {
		t.Fatalf("history against distribution does not say it is client-side:\n%s", out)
	}
	out = host.run("rollback", ref)
	if !strings.Contains(out, v2+" -> "+v1) || !strings.Contains(out, "client-side") {
		t.Fatalf("rollback:\n%s", out)
	}
	var synced []wfSync
	host.runJSON(&synced, "sync", "app.yaml", "--update")
	if len(synced) != 1 || synced[0].Digest != v1 || synced[0].Transferred != 0 {
		t.Fatalf("sync after rollback: %+v", synced)
	}
	wfSameBytes(t, host.path("models"), ws.path("v1"), "m.onnx", "m.onnx.data")
	host.run("verify", "app.yaml")
	out = host.run("tag", ref, "stable")
	if !strings.Contains(out, "keeps no tag history") {
		t.Fatalf("tag:\n%s", out)
	}
}
