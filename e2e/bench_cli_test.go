//go:build cgo

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// End-to-end tests of `modelctl bench` and `modelctl doctor` through the
// real binary, on a synthetic FP32 model and its INT8 version made by the
// real `modelctl synth` and `modelctl quantize`.

// benchCLI runs the binary and returns stdout, stderr and the exit code.
func benchCLI(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.Modelctl(t), args...)
	if dir != "" {
		cmd.Dir = dir
	}
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("modelctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// models writes a small synthetic FP32 model and quantizes it to INT8.
func benchModels(t *testing.T) (fp32, int8 string) {
	t.Helper()
	dir := t.TempDir()
	fp32 = filepath.Join(dir, "fp32", "model.onnx")
	int8 = filepath.Join(dir, "int8", "model.onnx")
	if _, errOut, code := benchCLI(t, "", nil, "synth", "-o", filepath.Dir(fp32), "--hidden", "128", "--layers", "2"); code != 0 {
		t.Fatalf("synth: exit %d: %s", code, errOut)
	}
	if _, errOut, code := benchCLI(t, "", nil, "quantize", fp32, "-o", int8); code != 0 {
		t.Fatalf("quantize: exit %d: %s", code, errOut)
	}
	return fp32, int8
}

// breakScales copies an INT8 model with every weight scale multiplied by 8,
// the classic bug of a quantizer that gets its scale wrong.
func breakScales(t *testing.T, model string) string {
	t.Helper()
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, init := range m.GetGraph().GetInitializer() {
		if !strings.HasSuffix(init.GetName(), "weight_scale") || init.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		switch {
		case len(init.RawData) > 0:
			for i := 0; i+4 <= len(init.RawData); i += 4 {
				v := math.Float32frombits(binary.LittleEndian.Uint32(init.RawData[i:]))
				binary.LittleEndian.PutUint32(init.RawData[i:], math.Float32bits(8*v))
			}
		case len(init.FloatData) > 0:
			for i := range init.FloatData {
				init.FloatData[i] *= 8
			}
		default:
			t.Fatalf("scale %s is stored externally; extend breakScales", init.GetName())
		}
		n++
	}
	if n == 0 {
		t.Fatalf("%s has no weight scales to break", model)
	}
	out, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	broken := filepath.Join(dir, filepath.Base(model))
	if err := os.WriteFile(broken, out, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.Open(model + ".data")
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	dst, err := os.Create(broken + ".data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, data); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return broken
}

var benchArgs = []string{"--shape", "input=1x16x128", "--warmup", "2", "--runs", "7", "--threads", "1", "--provider", "cpu"}

func TestBenchInt8AgainstFP32(t *testing.T) {
	fp32, int8 := benchModels(t)
	stdout, stderr, code := benchCLI(t, "", nil, append([]string{"bench", int8, "--baseline", fp32, "--json"}, benchArgs...)...)
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout)
	}
	if !slices.Contains(r.Environment.Providers, "CPUExecutionProvider") {
		t.Errorf("providers available %v", r.Environment.Providers)
	}
	if r.Schema != bench.ReportSchema || r.Baseline == nil || r.Environment.ONNXRuntime != bench.ORTVersion {
		t.Fatalf("report header: schema %d baseline %v ort %q", r.Schema, r.Baseline, r.Environment.ONNXRuntime)
	}
	for _, m := range []bench.ModelReport{r.Model, *r.Baseline} {
		l := m.LatencyMS
		if !(m.LoadMS > 0 && m.FirstInferenceMS > 0 && l.P50 > 0 && l.P95 >= l.P50 && l.Mean > 0 && l.Std >= 0) {
			t.Errorf("%s: latencies %+v, load %v, first %v", m.Path, l, m.LoadMS, m.FirstInferenceMS)
		}
		if m.PeakRSS.Load < 10<<20 || m.PeakRSS.Run < 10<<20 {
			t.Errorf("%s: peak RSS %+v, want at least the 10 MiB a loaded runtime takes", m.Path, m.PeakRSS)
		}
		if m.Files["model.onnx.data"] <= 0 || m.Files["model.onnx"] <= 0 || m.SizeBytes != m.Files["model.onnx"]+m.Files["model.onnx.data"] {
			t.Errorf("%s: files %v, size %d", m.Path, m.Files, m.SizeBytes)
		}
		if m.Provider != "cpu" {
			t.Errorf("%s: provider %q", m.Path, m.Provider)
		}
	}
	// INT8 weights are a quarter of FP32's.
	if *r.SizeRatio > 0.35 || *r.SizeRatio < 0.2 {
		t.Errorf("size ratio %v, want about 0.25", *r.SizeRatio)
	}
	if r.Speedup == nil || *r.Speedup <= 0 {
		t.Errorf("speedup %v", r.Speedup)
	}
	q, ok := r.Quality["output"]
	if !ok {
		t.Fatalf("quality %v: no figures for output", r.Quality)
	}
	if !(q.Cosine > 0.98 && q.Cosine <= 1) || q.MSE < 0 || q.MSE > 0.01 || q.MAE > 0.05 || q.MaxAbs < q.MAE {
		t.Errorf("quality %+v, want cosine in (0.98, 1] and errors under the gates", q)
	}
	if !r.Gates.Passed || r.Gates.MinCosine != 0.98 {
		t.Errorf("gates %+v", r.Gates)
	}
	if in := r.Inputs["input"]; in.DType != "float32" || len(in.Shape) != 3 || in.Source != "generated" {
		t.Errorf("inputs %+v", r.Inputs)
	}

	// push --bench turns this JSON into manifest annotations.
	ann, err := manifests.DecodeBenchReport([]byte(stdout))
	if err != nil {
		t.Fatalf("annotations from the report: %v", err)
	}
	for _, k := range []string{"model.latency_ms.p50", "model.peak_rss_bytes.run", "baseline.load_ms", "speedup", "quality.output.cosine", "quality_worst.mae", "gates.passed", "environment.onnxruntime"} {
		if ann[manifests.AnnotationBenchPrefix+k] == "" {
			t.Errorf("annotation %s missing (have %d keys)", k, len(ann))
		}
	}

	// The human table has both columns and the verdict.
	stdout, _, code = benchCLI(t, "", nil, append([]string{"bench", int8, "--baseline", fp32}, benchArgs...)...)
	if code != 0 || !strings.Contains(stdout, "baseline") || !strings.Contains(stdout, "speedup") || !strings.Contains(stdout, "passed") {
		t.Errorf("table (exit %d):\n%s", code, stdout)
	}
}

func TestBenchBrokenScalesFailsGate(t *testing.T) {
	fp32, int8 := benchModels(t)
	broken := breakScales(t, int8)
	stdout, stderr, code := benchCLI(t, "", nil, append([]string{"bench", broken, "--baseline", fp32}, benchArgs...)...)
	if code != 2 {
		t.Fatalf("bench of a broken model: exit %d, want 2\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "quality gate failed") || !strings.Contains(stdout, "FAILED") || !strings.Contains(stdout, "FAIL") {
		t.Errorf("want the failing outputs in a table and a one-line reason:\n%s\n%s", stdout, stderr)
	}
	stdout, _, code = benchCLI(t, "", nil, append([]string{"bench", broken, "--baseline", fp32, "--json"}, benchArgs...)...)
	var r bench.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 2 {
		t.Fatalf("json: exit %d, %v", code, err)
	}
	if r.Gates.Passed || len(r.Gates.Failures) == 0 || r.Quality["output"].Cosine > 0.98 {
		t.Errorf("broken model: gates %+v quality %+v", r.Gates, r.Quality)
	}
	// Loosened gates let it pass: the exit code follows the gates.
	_, _, code = benchCLI(t, "", nil, append([]string{"bench", broken, "--baseline", fp32, "--min-cosine", "-1", "--max-mse", "1e9", "--max-mae", "1e9"}, benchArgs...)...)
	if code != 0 {
		t.Errorf("loose gates: exit %d, want 0", code)
	}
}

func TestBenchInputsAndErrors(t *testing.T) {
	fp32, _ := benchModels(t)
	dir := t.TempDir()
	npy := filepath.Join(dir, "input.npy")
	data := make([]float32, 1*4*128)
	for i := range data {
		data[i] = float32(i%7) / 7
	}
	if err := bench.WriteNPY(npy, bench.Tensor{Name: "input", DType: bench.Float32, Shape: []int64{1, 4, 128}, Data: data}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := benchCLI(t, "", nil, "bench", fp32, "--input", "input="+npy, "--runs", "2", "--warmup", "0", "--json", "--provider", "cpu")
	var r bench.Report
	if code != 0 || json.Unmarshal([]byte(stdout), &r) != nil || r.Inputs["input"].Source != npy || r.Inputs["input"].Shape[1] != 4 {
		t.Errorf("--input: exit %d, inputs %+v\n%s", code, r.Inputs, stderr)
	}

	noLib := t.TempDir()
	exe := filepath.Join(noLib, "modelctl")
	b, err := os.ReadFile(testenv.Modelctl(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		env  []string
		args []string
		want string
	}{
		{"dynamic dim unbound", "", nil, []string{"bench", fp32}, "--shape input=1xNx128"},
		{"unknown input", "", nil, []string{"bench", fp32, "--shape", "nope=1x2"}, `no input "nope"`},
		{"bad shape", "", nil, []string{"bench", fp32, "--shape", "input=1x16x255"}, "fixes it at 128"},
		{"cuda absent", "", nil, append([]string{"bench", fp32, "--provider", "cuda"}, benchArgs[:2]...), "provider cuda"},
		{"bad provider", "", nil, []string{"bench", fp32, "--provider", "tpu"}, "want auto, cpu"},
		{"not a model", "", nil, []string{"bench", npy}, "not a valid ONNX model"},
		{"hostile npy", "", nil, []string{"bench", fp32, "--input", "input=" + fp32}, "not a .npy file"},
		{"missing --ort-lib", "", nil, []string{"bench", fp32, "--ort-lib", "/nonexistent/lib.so"}, "--ort-lib"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := benchCLI(t, tc.dir, tc.env, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line with %q", code, stderr, tc.want)
			}
		})
	}
	// A binary outside the checkout, run from elsewhere, finds no library and
	// says the one command that installs it.
	cmd := exec.Command(exe, "bench", fp32)
	cmd.Dir = noLib
	cmd.Env = append(os.Environ(), bench.LibraryEnv+"=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "run `make ort`") {
		t.Errorf("no library: %v\n%s", err, out)
	}
	// --provider auto falls back to cpu with a warning.
	stdout, stderr, code = benchCLI(t, "", nil, append([]string{"bench", fp32, "--json", "--provider", "auto"}, benchArgs[:6]...)...)
	if code != 0 || !strings.Contains(stderr, "running on cpu") || !strings.Contains(stdout, `"provider": "cpu"`) {
		t.Errorf("auto: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestDoctor(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	stdout, stderr, code := benchCLI(t, "", nil, "doctor", srv.Addr+"/sarai/audio-core:int8")
	if code != 0 {
		t.Fatalf("doctor: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"onnxruntime " + bench.ORTVersion, "libonnxruntime", "CPUExecutionProvider", "cpu       ok", "features:", "VNNI", "memory:", "disk:", "registry " + srv.Addr + ": reachable", "no credentials needed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = benchCLI(t, "", nil, "doctor", "--json")
	var r struct {
		ONNXRuntime bench.RuntimeInfo `json:"onnxruntime"`
		System      bench.SystemInfo  `json:"system"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &r) != nil || r.ONNXRuntime.Version != bench.ORTVersion || r.System.CPUs < 1 || r.System.MemoryTotal == 0 || r.System.DiskFree == 0 {
		t.Errorf("doctor --json: exit %d\n%s", code, stdout)
	}
	// A registry that does not answer fails the check.
	_, stderr, code = benchCLI(t, "", nil, "doctor", testenv.FreeAddr(t)+"/x")
	if code != 1 || !strings.Contains(stderr, "connection refused") {
		t.Errorf("unreachable registry: exit %d, %s", code, stderr)
	}
}

// TestBenchRealModel runs the PP-OCRv4 recognizer (opset 9, MatMul and
// attention, a softmax over characters) against its INT8 version: the
// class-score output gets a top-1 agreement.
func TestBenchRealModel(t *testing.T) {
	fp32 := filepath.Join(testenv.Root(t), ".cache", "models", "ch_PP-OCRv4_rec_infer.onnx")
	if _, err := os.Stat(fp32); err != nil {
		t.Fatalf("%v: run `make tools` (mk/onnx.mk fetches the real models)", err)
	}
	int8 := filepath.Join(t.TempDir(), "rec_int8.onnx")
	if _, errOut, code := benchCLI(t, "", nil, "quantize", fp32, "-o", int8); code != 0 {
		t.Fatalf("quantize: exit %d: %s", code, errOut)
	}
	stdout, stderr, code := benchCLI(t, "", nil, "bench", int8, "--baseline", fp32, "--shape", "x=1x3x48x160",
		"--warmup", "1", "--runs", "3", "--threads", "1", "--provider", "cpu", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Quality) != 1 {
		t.Fatalf("quality %v: want the one softmax output", r.Quality)
	}
	for name, q := range r.Quality {
		if q.Top1 == nil || *q.Top1 < 0.9 || q.Cosine <= 0.98 || q.Cosine > 1 {
			t.Errorf("%s: %+v, want top-1 agreement >= 0.9 and cosine in (0.98, 1]", name, q)
		}
	}
	if *r.SizeRatio >= 1 || r.Model.LatencyMS.P50 <= 0 {
		t.Errorf("size ratio %v, p50 %v", *r.SizeRatio, r.Model.LatencyMS.P50)
	}
}

// TestDoctorCredentials points doctor at a registry that wants credentials
// (the distribution registry with htpasswd auth): doctor says so, and says
// whether the Docker credential store has some for it.
func TestDoctorCredentials(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(`version: 0.1
storage:
  filesystem:
    rootdirectory: `+filepath.Join(dir, "data")+`
http:
  addr: `+addr+`
auth:
  htpasswd:
    realm: test
    path: `+htpasswd+`
`), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, addr, "", nil, testenv.Tool(t, "registry"), "serve", config)

	dockerConfig := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + dockerConfig}
	stdout, stderr, code := benchCLI(t, "", env, "doctor", addr+"/sarai/audio-core:int8")
	if code != 0 || !strings.Contains(stdout, "credentials required (none stored)") || !strings.Contains(stdout, "modelctl login "+addr) {
		t.Errorf("no credentials: exit %d\n%s\n%s", code, stdout, stderr)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("alice:secret"))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(`{"auths":{"`+addr+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = benchCLI(t, "", env, "doctor", "--json", addr)
	var r struct {
		Registry struct {
			Reachable       bool   `json:"reachable"`
			AuthRequired    bool   `json:"auth_required"`
			HaveCredentials bool   `json:"have_credentials"`
			Challenge       string `json:"challenge"`
		} `json:"registry"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 {
		t.Fatalf("doctor --json: exit %d %v\n%s", code, err, stdout)
	}
	if !r.Registry.Reachable || !r.Registry.AuthRequired || !r.Registry.HaveCredentials || !strings.Contains(r.Registry.Challenge, "Basic") {
		t.Errorf("registry check %+v", r.Registry)
	}
}
