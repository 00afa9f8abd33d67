package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

// qemuX86 runs modelctl on an emulated CPU without VNNI (Haswell: AVX2,
// FMA): the server of issue 12, whatever CPU the test runs on.
const (
	qemuX86     = "/usr/bin/qemu-x86_64"
	emulatedCPU = "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"
)

// tryOnHaswell runs modelctl like try, under qemu on a CPU without VNNI.
func (h *wfHost) tryOnHaswell(args ...string) (string, string, int) {
	h.t.Helper()
	if _, err := os.Stat(qemuX86); err != nil {
		h.t.Fatalf("%s is missing: run `make tools` (Debian's qemu-user)", qemuX86)
	}
	return h.tryVia([]string{qemuX86, "-cpu", emulatedCPU}, args...)
}

// TestPortableWorkflow: what passed its gates on the workstation runs
// right on a server without VNNI, and nothing that failed reaches one.
// The server is emulated (qemu -cpu Haswell), so this holds on any host.
func TestPortableWorkflow(t *testing.T) {
	ortLib := filepath.Join(testenv.Root(t), ".cache", "onnxruntime-1.30.0", "linux-x64", "libonnxruntime.so.1")
	if _, err := os.Stat(ortLib); err != nil {
		t.Fatalf("onnxruntime is not installed at %s: run `make ort` first", ortLib)
	}
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	ws := newWFHost(t, "workstation")
	ws.run("synth", "-o", "fp32", "--size", "4MiB", "--seed", "1", "--name", "audio.onnx")
	fp32 := ws.path("fp32/audio.onnx")
	ws.run("quantize", fp32, "-o", "portable/audio.onnx")
	ws.run("quantize", fp32, "-o", "full/audio.onnx", "--full-range")
	bench := func(model, report, minCosine string) int {
		out, errOut, code := ws.try("bench", ws.path(model), "--baseline", fp32, "--json", "--shape", "input=1x8x256",
			"--warmup", "0", "--runs", "2", "--threads", "1", "--provider", "cpu", "--ort-lib", ortLib, "--min-cosine", minCosine)
		if code != 0 && code != 2 {
			t.Fatalf("bench %s: exit %d\n%s", model, code, errOut)
		}
		if err := os.WriteFile(ws.path(report), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := bench("portable/audio.onnx", "portable.json", "0.99"); code != 0 {
		t.Fatalf("portable model: bench exit %d, want its gates passed on any CPU", code)
	}
	// A gate nothing quantized meets: the report fails, on any CPU.
	if code := bench("portable/audio.onnx", "strict.json", "0.9999999"); code != 2 {
		t.Fatalf("bench with an unreachable gate: exit %d, want 2", code)
	}
	bench("full/audio.onnx", "full.json", "0.99")

	// A failed report is refused before anything is sent.
	_, errOut, code := ws.try("push", ws.path("portable/audio.onnx"), repo+":strict", "--bench", ws.path("strict.json"))
	if code != 2 || !strings.Contains(errOut, "failed its quality gates") || !strings.Contains(errOut, "output: cosine") {
		t.Fatalf("push of a failed report: exit %d, %q; want 2 naming the failing output", code, errOut)
	}
	if out, _, code := ws.try("ls", srv.Addr); code != 0 || strings.Contains(out, "sarai/audio") {
		t.Fatalf("after a refused push the registry lists %q (exit %d): nothing may have reached it", out, code)
	}
	ws.run("push", ws.path("portable/audio.onnx"), repo+":strict", "--bench", ws.path("strict.json"), "--allow-failed-gates")
	ws.run("push", ws.path("portable/audio.onnx"), repo+":v1", "--bench", ws.path("portable.json"))
	ws.run("push", ws.path("full/audio.onnx"), repo+":full", "--bench", ws.path("full.json"), "--allow-failed-gates")

	var art struct {
		Annotations map[string]string `json:"annotations"`
		Files       []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	q := manifests.AnnotationQuantizationPrefix
	ws.runJSON(&art, "inspect", repo+":v1")
	if a := art.Annotations; a[q+"weight_range"] != "portable" || a[q+"mode"] != "int8" || a[q+"per_channel"] != "false" ||
		a[manifests.AnnotationRequiresCPU] != "" || a[manifests.AnnotationGatesOverridden] != "" {
		t.Fatalf("inspect v1: annotations %v", a)
	}
	var names []string
	for _, f := range art.Files {
		names = append(names, f.Path)
	}
	if strings.Join(names, " ") != "audio.onnx audio.onnx.data audio.onnx.check.json" {
		t.Fatalf("v1 files %v: want the graph, its data and the check reference", names)
	}
	ws.runJSON(&art, "inspect", repo+":full")
	if a := art.Annotations; a[q+"weight_range"] != "full" || a[manifests.AnnotationRequiresCPU] != manifests.RequireVNNI {
		t.Fatalf("inspect full: annotations %v, want weight_range full and requires.cpu %q", a, manifests.RequireVNNI)
	}
	ws.runJSON(&art, "inspect", repo+":strict")
	if a := art.Annotations; a[manifests.AnnotationGatesOverridden] != "true" || a[manifests.AnnotationBenchPrefix+"gates.passed"] != "false" {
		t.Fatalf("inspect strict: annotations %v, want the override recorded", a)
	}

	// The server: its config, pinned to v1 and checked on its own (emulated) CPU.
	host := newWFHost(t, "server")
	host.env = append(host.env, "ONNXRUNTIME_LIB="+ortLib)
	cfg := "config/app.yaml"
	if err := os.MkdirAll(host.path("config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host.path(cfg), []byte("audio:\n  model_path: \"models/audio.onnx\"\n  check: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host.run("pin", cfg, "--key", "audio", repo+":v1")
	out, errOut, code := host.tryOnHaswell("sync", cfg)
	if code != 0 || !strings.Contains(errOut, "gates (cosine >= 0.99") || !strings.Contains(errOut, "passed") {
		t.Fatalf("sync with check: true on a CPU without VNNI: exit %d\n%s\n%s", code, out, errOut)
	}
	host.run("verify", cfg)
	snapshot := func() string {
		var b strings.Builder
		b.Write(wfReadFile(t, host.path(cfg)))
		for _, f := range []string{"audio.onnx", "audio.onnx.data", "audio.onnx.check.json"} {
			b.Write(wfReadFile(t, host.path("models/"+f)))
		}
		return b.String()
	}
	before := snapshot()

	// A full-range model on a CPU without VNNI: refused before any byte.
	setArtifact := func(tag string) {
		b := regexp.MustCompile(regexp.QuoteMeta(repo)+`:[a-z0-9]+`).ReplaceAll(wfReadFile(t, host.path(cfg)), []byte(repo+":"+tag))
		if err := os.WriteFile(host.path(cfg), b, 0o644); err != nil {
			t.Fatal(err)
		}
		before = snapshot()
	}
	setArtifact("full")
	_, errOut, code = host.tryOnHaswell("sync", cfg, "--update")
	if code == 0 || !strings.Contains(errOut, "the model needs amd64 with avx512vnni") || !strings.Contains(errOut, "nothing was installed") {
		t.Fatalf("sync --update to a full-range model without VNNI: exit %d, %q", code, errOut)
	}
	if snapshot() != before {
		t.Fatal("a refused sync changed the config or the installed files")
	}

	// A model that fails its gates on this machine: --check refuses it.
	setArtifact("strict")
	_, errOut, code = host.try("sync", cfg, "--update", "--check")
	if code == 0 || !strings.Contains(errOut, "check on this machine failed, nothing was switched") || !strings.Contains(errOut, "output: cosine") {
		t.Fatalf("sync --check of a model failing its gates: exit %d, %q", code, errOut)
	}
	if snapshot() != before {
		t.Fatal("a failed check changed the config or the installed files")
	}
	host.run("verify", cfg)
	var res []struct {
		Checked bool   `json:"checked"`
		Status  string `json:"status"`
	}
	setArtifact("v1")
	host.runJSON(&res, "sync", cfg, "--update", "--check")
	if len(res) != 1 || res[0].Status != "up to date" {
		t.Fatalf("sync back to the installed v1: %+v", res)
	}
}
