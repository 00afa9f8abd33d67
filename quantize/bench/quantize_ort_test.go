//go:build cgo

package bench_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// runBoth runs the FP32 model and its quantized version in onnxruntime on
// the same seeded inputs (four seeds) and returns the lowest cosine over
// the outputs, each concatenated over the seeds. An output of one element
// per run (a probability) has no useful cosine: for it, the Pearson
// correlation of the logits over 16 seeds is returned instead.
func runBoth(t *testing.T, fp32, quant string, shapes map[string][]int64) float64 {
	t.Helper()
	ctx := context.Background()
	opts := bench.Options{Threads: 1}
	var ref, got [][]float64
	scalar := false
	seeds := int64(4)
	for seed := int64(0); seed < seeds; seed++ {
		inputs, err := bench.GenerateInputs(fp32, shapes, 42+seed)
		if err != nil {
			t.Fatal(err)
		}
		a, err := bench.Run(ctx, fp32, inputs, opts)
		if err != nil {
			t.Fatalf("run %s: %v", fp32, err)
		}
		b, err := bench.Run(ctx, quant, inputs, opts)
		if err != nil {
			t.Fatalf("run %s: %v", quant, err)
		}
		if len(b) != len(a) {
			t.Fatalf("%d outputs, want %d", len(b), len(a))
		}
		if ref == nil {
			ref, got = make([][]float64, len(a)), make([][]float64, len(a))
			scalar = len(a) == 1 && a[0].Len() == 1
			if scalar {
				seeds = 16
			}
		}
		for i := range a {
			if _, err := bench.Similarity(a[i], b[i]); err != nil {
				t.Fatalf("output %s: %v", a[i].Name, err)
			}
			av, err1 := a[i].Float64s()
			bv, err2 := b[i].Float64s()
			if err1 != nil || err2 != nil {
				t.Fatalf("output %s: %v %v", a[i].Name, err1, err2)
			}
			ref[i], got[i] = append(ref[i], av...), append(got[i], bv...)
		}
	}
	if scalar {
		return pearson(logits(ref[0]), logits(got[0]))
	}
	worst := 1.0
	for i := range ref {
		worst = min(worst, cosine(ref[i], got[i]))
	}
	return worst
}

func cosine(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab, aa, bb = ab+a[i]*b[i], aa+a[i]*a[i], bb+b[i]*b[i]
	}
	if aa == 0 && bb == 0 {
		return 1
	}
	return ab / math.Sqrt(aa*bb)
}

func pearson(a, b []float64) float64 {
	ma, mb := mean(a), mean(b)
	ca, cb := make([]float64, len(a)), make([]float64, len(b))
	for i := range a {
		ca[i], cb[i] = a[i]-ma, b[i]-mb
	}
	return cosine(ca, cb)
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func logits(p []float64) []float64 {
	out := make([]float64, len(p))
	for i, x := range p {
		x = min(max(x, 1e-7), 1-1e-7)
		out[i] = math.Log(x / (1 - x))
	}
	return out
}

type modeCase struct {
	name      string
	opts      quantize.Options
	minCosine float64
}

var modes = []modeCase{
	{"int8", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt8}, 0.99},
	{"int8-reduce-range", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt8, ReduceRange: true}, 0.99},
	{"int8-per-channel", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt8, PerChannel: true}, 0.99},
	{"uint8", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt8, Uint8: true}, 0.99},
	{"fp16", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeFP16}, 0.999},
	{"fp16-weights-only", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeFP16, FP16WeightsOnly: true}, 0.9999},
	{"int4", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt4}, 0.95},
	{"int4-symmetric-64", quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt4, Symmetric: true, BlockSize: 64}, 0.95},
}

// TestQuantizeSynthetic: every mode's output passes the ONNX checker, runs
// in onnxruntime and stays close to FP32; INT8 of the synthetic model must
// reach cosine 0.999.
func TestQuantizeSynthetic(t *testing.T) {
	dir := t.TempDir()
	fp32, err := synth.Generate(dir, synth.Config{Layers: 2, Hidden: 128, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int64{"input": {1, 16, 128}}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), m.name+".onnx")
			sum, err := quantize.Quantize(context.Background(), fp32, out, m.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(sum.Quantized) == 0 {
				t.Fatal("nothing quantized")
			}
			onnxtest.Check(t, out)
			cos := runBoth(t, fp32, out, shapes)
			want := m.minCosine
			if strings.HasPrefix(m.name, "int8") || m.name == "uint8" {
				want = 0.999
			}
			t.Logf("synthetic %s: cosine %.6f", m.name, cos)
			if cos < want {
				t.Errorf("cosine %.6f, want >= %v", cos, want)
			}
		})
	}
}

// TestQuantizeRealModels quantizes the three real models in every mode,
// checks them, runs them and compares them with FP32.
func TestQuantizeRealModels(t *testing.T) {
	models := []struct {
		file   string
		shapes map[string][]int64
		min    map[string]float64 // per mode, where it differs from the mode's default
	}{
		{onnxtest.PPOCRv4, map[string][]int64{"x": {1, 3, 48, 320}}, nil},
		{onnxtest.HelloDeepa, nil, nil},
		{onnxtest.SileroVAD, map[string][]int64{"input": {1, 512}, "state": {2, 1, 128}}, nil},
	}
	for _, md := range models {
		fp32 := onnxtest.Model(t, md.file)
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", md.file, m.name), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "q.onnx")
				if _, err := quantize.Quantize(context.Background(), fp32, out, m.opts); err != nil {
					t.Fatal(err)
				}
				onnxtest.Check(t, out)
				cos := runBoth(t, fp32, out, md.shapes)
				want := m.minCosine
				if v, ok := md.min[m.name]; ok {
					want = v
				}
				t.Logf("%s %s: cosine %.6f", md.file, m.name, cos)
				if cos < want {
					t.Errorf("cosine %.6f, want >= %v", cos, want)
				}
			})
		}
	}
}
