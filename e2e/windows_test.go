package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
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

// winHost is a Windows workstation: modelctl.exe under Wine, with
// onnxruntime.dll next to it as the release zip has it, its own directory,
// cache and credential store. Paths given to it are Windows paths.
type winHost struct {
	t    *testing.T
	wine *testenv.Wine
	exe  string
	dir  string
	env  []string
}

func newWinHost(t *testing.T, wine *testenv.Wine, name string) *winHost {
	root := testenv.Root(t)
	dll := filepath.Join(root, ".cache", "onnxruntime-1.30.0", "win32-x64", "onnxruntime.dll")
	if _, err := os.Stat(dll); err != nil {
		t.Fatalf("onnxruntime.dll is not installed at %s: run `make ort-windows` first", dll)
	}
	dir := filepath.Join(t.TempDir(), name)
	bin := filepath.Join(dir, "Program Files", "modelctl")
	for _, sub := range []string{bin, filepath.Join(dir, ".state", "cache"), filepath.Join(dir, ".state", "docker")} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(t, testenv.WindowsModelctl(t), filepath.Join(bin, "modelctl.exe"))
	copyTo(t, dll, filepath.Join(bin, "onnxruntime.dll"))
	st := filepath.Join(dir, ".state")
	return &winHost{t: t, wine: wine, exe: filepath.Join(bin, "modelctl.exe"), dir: dir, env: []string{
		"MODELCTL_CACHE=" + wine.Path(filepath.Join(st, "cache")),
		"DOCKER_CONFIG=" + wine.Path(filepath.Join(st, "docker")),
		"ONNXRUNTIME_LIB=",
	}}
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// win is the Windows path of a path relative to the host's directory.
func (h *winHost) win(rel string) string { return h.wine.Path(h.path(rel)) }

func (h *winHost) path(rel string) string { return filepath.Join(h.dir, filepath.FromSlash(rel)) }

// try runs modelctl.exe in the host's directory with stdin and returns
// stdout, stderr and the exit status.
func (h *winHost) try(stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	cmd := h.wine.Command(h.exe, args...)
	cmd.Dir = h.dir
	cmd.Env = append(cmd.Env, h.env...)
	cmd.Stdin = strings.NewReader(stdin)
	stdout, stderr, err := h.wine.Output(cmd)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(stdout), string(stderr), 0
	case errors.As(err, &ee):
		return string(stdout), string(stderr), ee.ExitCode()
	}
	h.t.Fatalf("modelctl.exe %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

func (h *winHost) run(args ...string) string {
	h.t.Helper()
	return h.runIn("", args...)
}

func (h *winHost) runIn(stdin string, args ...string) string {
	h.t.Helper()
	out, errOut, code := h.try(stdin, args...)
	if code != 0 {
		h.t.Fatalf("modelctl.exe %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (h *winHost) runJSON(v any, args ...string) {
	h.t.Helper()
	out := h.run(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		h.t.Fatalf("modelctl.exe %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestWindowsWorkstation is the workstation half of the workflow on
// Windows (modelctl.exe under Wine) and the server half on Linux: the
// workstation quantizes a model with external data to int8, fp16 and int4
// (byte-identical to the Linux quantizer), benchmarks it with gates through
// onnxruntime.dll, logs in and pushes to a Linux `modelctl serve` and
// straight to an S3 bucket; Linux pulls and verifies the bytes, and a push
// of its own quantization gives the same artifact digest. A Windows
// application's config (CRLF, backslashes, a drive letter) is pinned,
// synced, verified, updated and rolled back by modelctl.exe.
func TestWindowsWorkstation(t *testing.T) {
	wine := testenv.StartWine(t)
	ws := newWinHost(t, wine, "workstation")
	lin := newWFHost(t, "linux")

	// Quantize on both systems: every file is byte-identical. The FP32
	// model is large enough that the int8 weights (5 MiB) are hardlinked
	// from the cache on install.
	modes := []string{"int8", "fp16", "int4"}
	for _, h := range []struct {
		name string
		run  func(...string) string
		p    func(string) string
	}{
		{"windows", ws.run, func(rel string) string { return strings.ReplaceAll(rel, "/", `\`) }},
		{"linux", lin.run, func(rel string) string { return rel }},
	} {
		for _, seed := range []string{"1", "2"} {
			h.run("synth", "-o", h.p("v"+seed+"/fp32"), "--size", "20MiB", "--seed", seed, "--name", "audio.onnx")
		}
		for _, mode := range modes {
			h.run("quantize", h.p("v1/fp32/audio.onnx"), "-o", h.p("v1/"+mode+"/audio_"+mode+".onnx"), "--mode", mode)
		}
		h.run("quantize", h.p("v2/fp32/audio.onnx"), "-o", h.p("v2/int8/"+wfGraph))
	}
	wfSameBytes(t, ws.path("v1/fp32"), lin.path("v1/fp32"), "audio.onnx", "audio.onnx.data")
	for _, mode := range modes {
		g := "audio_" + mode + ".onnx"
		wfSameBytes(t, ws.path("v1/"+mode), lin.path("v1/"+mode), g, g+".data")
	}
	wfSameBytes(t, ws.path("v2/int8"), lin.path("v2/int8"), wfGraph, wfData)

	// Bench through onnxruntime.dll, found next to modelctl.exe: the int8
	// model passes the quality gates, and a gate int4 cannot meet fails
	// the command.
	bench := func(model string, gates ...string) (string, string, int) {
		args := append([]string{"bench", model, "--baseline", `v1\fp32\audio.onnx`, "--json", "--shape", "input=1x8x256",
			"--warmup", "1", "--runs", "3", "--threads", "1", "--provider", "cpu"}, gates...)
		return ws.try("", args...)
	}
	out, errOut, code := bench(`v1\int8\`+wfGraph, "--min-cosine", "0.99")
	var report struct {
		Model struct {
			Provider string `json:"provider"`
		} `json:"model"`
		Gates struct {
			Passed bool `json:"passed"`
		} `json:"gates"`
	}
	if err := json.Unmarshal([]byte(out), &report); code != 0 || err != nil || !report.Gates.Passed || report.Model.Provider != "cpu" {
		t.Fatalf("bench int8 on Windows: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if err := os.WriteFile(ws.path("v1/bench.json"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := bench(`v1\int4\audio_int4.onnx`, "--min-cosine", "0.99999"); code == 0 {
		t.Fatalf("bench int4 with --min-cosine 0.99999 passed on Windows:\n%s", errOut)
	}

	// Log in (the password line ends in CRLF, as a Windows pipe sends it)
	// and push to a Linux registry that requires it.
	srv := secureServe(t)
	if _, _, code := ws.try("writer-pw\r\n", "push", `v1\int8\`+wfGraph, srv.Addr+"/models/audio-core:int8"); code == 0 {
		t.Fatal("push before login succeeded")
	}
	ws.runIn("writer-pw\r\n", "login", srv.Addr, "-u", "writer", "--password-stdin")
	repo := srv.Addr + "/models/audio-core"
	ref := repo + ":int8"
	ws.run("push", `v1\fp32\audio.onnx`, repo+":fp32")
	var pushed struct {
		Digest string `json:"digest"`
	}
	ws.runJSON(&pushed, "push", `v1\int8\`+wfGraph, ref, "--bench", `v1\bench.json`, "--parent", repo+":fp32")
	v1 := pushed.Digest
	var inspected struct {
		Digest    string            `json:"digest"`
		Benchmark map[string]string `json:"benchmark"`
	}
	ws.runJSON(&inspected, "inspect", ref)
	if inspected.Digest != v1 || len(inspected.Benchmark) == 0 {
		t.Fatalf("inspect %s on Windows: digest %s (want %s), benchmark %v", ref, inspected.Digest, v1, inspected.Benchmark)
	}

	// Linux pulls and verifies what Windows pushed; pushing its own
	// quantization of the same model gives the same artifact digest.
	mustMC(t, lin.env, "writer-pw\n", "login", srv.Addr, "-u", "writer", "--password-stdin")
	lin.run("pull", ref, "-o", "pulled")
	wfSameBytes(t, lin.path("pulled"), lin.path("v1/int8"), wfGraph, wfData)
	lin.runJSON(&pushed, "push", lin.path("v1/int8/"+wfGraph), ref, "--bench", ws.path("v1/bench.json"), "--parent", repo+":fp32")
	if pushed.Digest != v1 {
		for _, d := range []string{v1, pushed.Digest} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+repo[:strings.IndexByte(repo, '/')]+"/v2/models/audio-core/manifests/"+d, nil)
			req.SetBasicAuth("writer", "writer-pw")
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("manifest %s:\n%s", d, b)
			}
		}
		t.Fatalf("the same model quantized on Linux pushed as %s; Windows pushed %s", pushed.Digest, v1)
	}
	t.Logf("int8 artifact digest, quantized on Windows and on Linux: %s", v1)

	// Windows pulls it back.
	ws.run("pull", ref, "-o", `pulled`)
	wfSameBytes(t, ws.path("pulled"), lin.path("v1/int8"), wfGraph, wfData)

	// A Windows application's config: CRLF line endings, a model_path with
	// a drive letter and backslashes, a config path with backslashes.
	models := ws.win("app/models/onnx")
	cfgText := "# Sarai on Windows: models are pinned by modelctl\r\n" +
		"audio_omni:\r\n" +
		"  name: \"Qwen3-Omni-3B-INT8\"\r\n" +
		"  model_path: \"" + strings.ReplaceAll(models, `\`, `\\`) + `\\` + wfGraph + "\"\r\n" +
		"  threads: 2\r\n"
	if err := os.MkdirAll(ws.path("app/config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ws.path("app/config/sarai.yaml"), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `app\config\sarai.yaml`
	ws.run("pin", cfg, "--key", "audio_omni", ref)
	wantCfg := strings.Replace(cfgText, "  threads: 2\r\n",
		"  artifact: \""+ref+"\"\r\n  artifact_digest: \""+v1+"\"\r\n  threads: 2\r\n", 1)
	if got := string(wfReadFile(t, ws.path("app/config/sarai.yaml"))); got != wantCfg {
		t.Fatalf("pinned config:\n%q\nwant:\n%q", got, wantCfg)
	}
	var synced []wfSync
	ws.runJSON(&synced, "sync", cfg)
	if len(synced) != 1 || synced[0].Status != "installed" || synced[0].Digest != v1 {
		t.Fatalf("sync on Windows: %+v", synced)
	}
	wfSameBytes(t, ws.path("app/models/onnx"), lin.path("v1/int8"), wfGraph, wfData)
	ws.run("verify", cfg)

	// A new version under the tag: sync --update replaces the installed
	// files (read-only, hardlinked from the cache) and rewrites the pin.
	ws.runJSON(&pushed, "push", `v2\int8\`+wfGraph, ref)
	v2 := pushed.Digest
	ws.runJSON(&synced, "sync", cfg, "--update")
	if synced[0].Digest != v2 || synced[0].Previous != v1 || synced[0].Status != "installed" {
		t.Fatalf("sync --update on Windows: %+v", synced)
	}
	if got := string(wfReadFile(t, ws.path("app/config/sarai.yaml"))); got != strings.Replace(wantCfg, v1, v2, 1) {
		t.Fatalf("sync --update wrote the config:\n%q", got)
	}
	wfSameBytes(t, ws.path("app/models/onnx"), lin.path("v2/int8"), wfGraph, wfData)
	ws.run("verify", cfg)

	// Roll back: the tag moves back and sync installs v1 from the cache.
	var rolled struct{ From, To string }
	ws.runJSON(&rolled, "rollback", ref)
	if rolled.From != v2 || rolled.To != v1 {
		t.Fatalf("rollback on Windows: %+v, want %s -> %s", rolled, v2, v1)
	}
	ws.runJSON(&synced, "sync", cfg, "--update")
	if synced[0].Digest != v1 || synced[0].Transferred != 0 {
		t.Fatalf("sync after rollback on Windows: %+v (want %s from the cache)", synced, v1)
	}
	wfSameBytes(t, ws.path("app/models/onnx"), lin.path("v1/int8"), wfGraph, wfData)
	ws.run("verify", cfg)
	if got := string(wfReadFile(t, ws.path("app/config/sarai.yaml"))); got != wantCfg {
		t.Fatalf("config after rollback:\n%q\nwant:\n%q", got, wantCfg)
	}

	// The cache knows which blobs are installed (hardlinks on NTFS as on
	// Linux): v1's weights are in pulled\ and in the application, v2's
	// nowhere, and prune frees v2's and keeps v1's.
	v1Data, v2Data := "sha256:"+fileSHA256(t, lin.path("v1/int8/"+wfData)), "sha256:"+fileSHA256(t, lin.path("v2/int8/"+wfData))
	var blobs []struct {
		Digest   string `json:"digest"`
		Installs int    `json:"installs"`
	}
	ws.runJSON(&blobs, "cache", "ls")
	installs := map[string]int{}
	for _, b := range blobs {
		installs[b.Digest] = b.Installs
	}
	if installs[v1Data] != 2 || installs[v2Data] != 0 {
		t.Fatalf("cache ls on Windows: v1 weights installed %d times (want 2), v2 weights %d (want 0): %+v", installs[v1Data], installs[v2Data], blobs)
	}
	var pruned struct {
		Removed []struct {
			Digest string `json:"digest"`
		} `json:"removed"`
	}
	ws.runJSON(&pruned, "cache", "prune", "--unused", "0")
	removed := map[string]bool{}
	for _, b := range pruned.Removed {
		removed[b.Digest] = true
	}
	if !removed[v2Data] || removed[v1Data] {
		t.Fatalf("cache prune on Windows removed %+v: want v2's weights %s and not v1's %s", pruned.Removed, v2Data, v1Data)
	}
	ws.run("verify", cfg)

	// Straight to S3 from Windows; Linux pulls it from the bucket.
	gw := s3test.Start(t)
	aws := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey, "AWS_REGION=" + gw.Region, "AWS_ENDPOINT_URL=" + gw.Endpoint}
	ws.env = append(ws.env, aws...)
	lin.env = append(lin.env, aws...)
	s3ref := "s3://" + gw.Bucket + "/models/sarai/audio-core:int8"
	ws.runJSON(&pushed, "push", `v1\int8\`+wfGraph, s3ref)
	lin.run("pull", s3ref, "-o", "from-s3")
	wfSameBytes(t, lin.path("from-s3"), lin.path("v1/int8"), wfGraph, wfData)
}

// TestWindowsAtomicFile runs the tests of internal/atomicfile, the helpers
// every write of the client, the quantizer and the registry goes through,
// as a Windows program: a replaced read-only file, a lock two descriptors
// take in turn, a synced rename.
func TestWindowsAtomicFile(t *testing.T) {
	wine := testenv.StartWine(t)
	exe := filepath.Join(t.TempDir(), "atomicfile.test.exe")
	build := exec.Command("go", "test", "-c", "-o", exe, "./internal/atomicfile")
	build.Dir = testenv.Root(t)
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c ./internal/atomicfile for windows: %v\n%s", err, out)
	}
	cmd := wine.Command(exe, "-test.v", "-test.count=1")
	cmd.Dir = t.TempDir()
	stdout, stderr, err := wine.Output(cmd)
	if err != nil || !bytes.Contains(stdout, []byte("\nPASS")) {
		t.Fatalf("internal/atomicfile tests on Windows: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, name := range []string{"TestWriteFile", "TestRenameReplacesReadOnly", "TestSyncDir", "TestLockExcludes", "TestTryLock"} {
		if !bytes.Contains(stdout, []byte("--- PASS: "+name)) {
			t.Fatalf("%s did not pass on Windows:\n%s", name, stdout)
		}
	}
}
