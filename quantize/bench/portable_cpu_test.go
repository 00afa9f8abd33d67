//go:build cgo && linux && amd64

package bench_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/auto"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// The emulated server: qemu's Haswell model has AVX2 and FMA but no VNNI,
// so onnxruntime takes the vpmaddubsw kernels there, whatever CPU runs
// the test. qemu-x86_64 comes from Debian's qemu-user (make tools).
const (
	emulatedCPU   = "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm" // what TCG lacks, off: no warnings
	emulatedEnv   = "MODELCTL_TEST_EMULATED_CASES"
	emulatedOut   = "MODELCTL_TEST_EMULATED_OUT"
	qemuX86       = "/usr/bin/qemu-x86_64"
	emulatedChild = "TestEmulatedCPUChild"
)

type emulatedCase struct {
	Name   string             `json:"name"`
	FP32   string             `json:"fp32"`
	Quant  string             `json:"quant"`
	Shapes map[string][]int64 `json:"shapes,omitempty"`
}

// TestPortableInt8WithoutVNNI is the server the issue was found on: the
// default int8 models of the synthetic and the real models run in
// onnxruntime on an emulated CPU without VNNI and must give what they give
// natively (and pass the quality bar), while full-range weights visibly
// saturate there — the proof that the emulation exercises the 16-bit
// kernel. It holds on any x86-64 host, with VNNI or without.
func TestPortableInt8WithoutVNNI(t *testing.T) {
	if _, err := os.Stat(qemuX86); err != nil {
		t.Fatalf("%s is missing: run `make tools` (Debian's qemu-user)", qemuX86)
	}
	dir := t.TempDir()
	syn, err := synth.Generate(filepath.Join(dir, "synth"), synth.Config{Layers: 2, Hidden: 128, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	type model struct {
		name   string
		fp32   string
		shapes map[string][]int64
		min    float64
	}
	models := []model{
		{"synthetic", syn, map[string][]int64{"input": {1, 16, 128}}, 0.999},
		{"PP-OCRv4", onnxtest.Model(t, onnxtest.PPOCRv4), map[string][]int64{"x": {1, 3, 48, 320}}, 0.99},
		{"hello_deepa", onnxtest.Model(t, onnxtest.HelloDeepa), nil, 0.99},
	}
	var cases []emulatedCase
	native := map[string]float64{}
	for _, m := range models {
		for _, v := range []struct {
			name string
			opts quantize.Options
		}{{"portable", quantize.Options{CostModel: quantize.CostModelOff}}, {"full-range", quantize.Options{CostModel: quantize.CostModelOff, FullRange: true}}} {
			if v.name == "full-range" && m.name != "synthetic" {
				continue // figures for the others are in docs/quantize.md; this keeps the test short
			}
			out := filepath.Join(dir, m.name+"-"+v.name, "q.onnx")
			if _, err := quantize.Quantize(context.Background(), m.fp32, out, v.opts); err != nil {
				t.Fatal(err)
			}
			c := emulatedCase{Name: m.name + "/" + v.name, FP32: m.fp32, Quant: out, Shapes: m.shapes}
			cases = append(cases, c)
			native[c.Name] = runBoth(t, c.FP32, c.Quant, c.Shapes)
		}
	}
	// int8-static multiplies uint8 activations by the same portable int8
	// weights (QDQ, fused into the integer MatMul): exact without VNNI too.
	static := filepath.Join(dir, "synthetic-static", "q.onnx")
	if _, err := auto.Quantize(context.Background(), syn, static, auto.Options{Options: quantize.Options{Mode: quantize.ModeInt8Static},
		Samples: auto.Samples{Shapes: map[string][]int64{"input": {1, 16, 128}}, Count: 2, Seed: 100}}); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, emulatedCase{Name: "synthetic/static", FP32: syn, Quant: static, Shapes: models[0].shapes})
	native["synthetic/static"] = runBoth(t, syn, static, models[0].shapes)
	spec, _ := json.Marshal(cases)
	outFile := filepath.Join(dir, "emulated.json")
	cmd := exec.Command(qemuX86, "-cpu", emulatedCPU, os.Args[0], "-test.run", "^"+emulatedChild+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), emulatedEnv+"="+string(spec), emulatedOut+"="+outFile)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the test under qemu -cpu %s: %v\n%s", emulatedCPU, err, b)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	var emulated map[string]float64
	if err := json.Unmarshal(b, &emulated); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		min  float64
	}{{"synthetic/static", 0.999}}
	for _, m := range models {
		checks = append(checks, struct {
			name string
			min  float64
		}{m.name + "/portable", m.min})
	}
	for _, m := range checks {
		name := m.name
		got, ok := emulated[name]
		t.Logf("%s: cosine %.6f native (vnni=%v), %.6f without VNNI", name, native[name], bench.HasVNNI(), got)
		switch {
		case !ok:
			t.Errorf("%s: no result from the emulated CPU", name)
		case got < m.min:
			t.Errorf("%s without VNNI: cosine %.6f, want >= %v", name, got, m.min)
		case math.Abs(got-native[name]) > 1e-4:
			t.Errorf("%s: cosine %.6f without VNNI, %.6f natively: the model computes differently", name, got, native[name])
		}
	}
	full := emulated["synthetic/full-range"]
	t.Logf("synthetic/full-range: cosine %.6f native, %.6f without VNNI", native["synthetic/full-range"], full)
	if !(full < 0.99) {
		t.Errorf("full-range weights without VNNI: cosine %.6f; they saturate there (about 0.95), so the emulation did not take the 16-bit kernel", full)
	}
}

// TestEmulatedCPUChild is TestPortableInt8WithoutVNNI's half that runs
// under qemu; run directly, it has nothing to do.
func TestEmulatedCPUChild(t *testing.T) {
	spec := os.Getenv(emulatedEnv)
	if spec == "" {
		return
	}
	if bench.HasVNNI() {
		t.Fatalf("the emulated CPU reports VNNI (%v): it must not", bench.CPUFeatures())
	}
	var cases []emulatedCase
	if err := json.Unmarshal([]byte(spec), &cases); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, c := range cases {
		out[c.Name] = runBoth(t, c.FP32, c.Quant, c.Shapes)
	}
	b, _ := json.Marshal(out)
	if err := os.WriteFile(os.Getenv(emulatedOut), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
