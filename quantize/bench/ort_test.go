//go:build cgo

package bench

import (
	"context"
	"math"
	"slices"
	"testing"
)

func TestRunClassifierMatchesGo(t *testing.T) {
	dir := t.TempDir()
	model := writeClassifier(t, dir, 1)
	inputs, err := GenerateInputs(model, map[string][]int64{"x": {3, 8}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(context.Background(), model, inputs, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Name != "logits" || out[1].Name != "probs" {
		t.Fatalf("outputs = %+v, want logits, probs", out)
	}
	x := inputs[0].Data.([]float32)
	w, b := classifierWeights(1)
	logits := out[0].Data.([]float32)
	probs := out[1].Data.([]float32)
	if !slices.Equal(out[0].Shape, []int64{3, 4}) {
		t.Fatalf("logits shape %v, want [3 4]", out[0].Shape)
	}
	for r := 0; r < 3; r++ {
		sum := 0.0
		for c := 0; c < 4; c++ {
			want := b[c]
			for k := 0; k < 8; k++ {
				want += x[r*8+k] * w[k*4+c]
			}
			if math.Abs(float64(logits[r*4+c]-want)) > 1e-5 {
				t.Errorf("logits[%d,%d] = %v, want %v", r, c, logits[r*4+c], want)
			}
			sum += float64(probs[r*4+c])
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("probs row %d sums to %v", r, sum)
		}
	}
}

func TestRunMixedAndHalf(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	mixed := writeMixed(t, dir)
	if _, err := GenerateInputs(mixed, nil, 1); err == nil || !contains(err.Error(), "--shape ids=") {
		t.Fatalf("dynamic seq without --shape: err = %v, want one naming --shape ids=", err)
	}
	inputs, err := GenerateInputs(mixed, map[string][]int64{"ids": {1, 5}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(ctx, mixed, inputs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := inputs[0].Data.([]int64)
	y := out[0].Data.([]float32)
	for i := range ids {
		if y[i] != float32(ids[i]+16000) {
			t.Errorf("y[%d] = %v, want %v", i, y[i], ids[i]+16000)
		}
	}
	if z := out[1].Data.([]bool); !slices.Equal(z, []bool{false, false}) {
		t.Errorf("z = %v, want [false false]", z)
	}

	half := writeHalf(t, dir)
	in := []Tensor{{Name: "x", DType: Float32, Shape: []int64{2, 3}, Data: []float32{1, -2, 0.5, 1000, 3.25, -0.125}}}
	out, err = Run(ctx, half, in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].DType != Float16 {
		t.Fatalf("h dtype %s, want float16", out[0].DType)
	}
	got, _ := out[0].Float64s()
	if want := []float64{1, -2, 0.5, 1000, 3.25, -0.125}; !slices.Equal(got, want) {
		t.Errorf("h = %v, want %v", got, want)
	}
	if s := out[1]; len(s.Shape) != 0 || s.Data.([]float32)[0] != 1002.625 {
		t.Errorf("s = %+v, want scalar 1002.625", s)
	}
	q, err := Similarity(Tensor{Name: "h", DType: Float32, Shape: []int64{2, 3}, Data: []float32{1, -2, 0.5, 1000, 3.25, -0.125}}, out[0])
	if err != nil || q.Cosine < 1-1e-12 || q.MaxAbs != 0 {
		t.Errorf("fp16 vs fp32 similarity = %+v, %v; want exact", q, err)
	}
}

func TestProviders(t *testing.T) {
	info, err := Runtime("")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != ORTVersion {
		t.Errorf("version %q, want %s", info.Version, ORTVersion)
	}
	if !slices.Contains(info.Available, "CPUExecutionProvider") {
		t.Errorf("available %v lacks CPUExecutionProvider", info.Available)
	}
	for _, p := range info.Providers {
		switch p.Name {
		case "cpu":
			if !p.Available || !p.Initializes {
				t.Errorf("cpu: %+v", p)
			}
		case "cuda": // listed (a plugin of the npm build) but no CUDA here
			if p.Initializes || p.Error == "" {
				t.Errorf("cuda: %+v, want not initializing, with a reason", p)
			}
		}
	}
	dir := t.TempDir()
	model := writeClassifier(t, dir, 1)
	if _, err := Load(context.Background(), model, Options{Provider: "cuda"}); err == nil {
		t.Error("--provider cuda on a CPU-only library: no error")
	}
	var warn stringsBuilder
	s, err := Load(context.Background(), model, Options{Provider: "auto", Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Provider() != "cpu" || !contains(warn.String(), "running on cpu") {
		t.Errorf("auto: provider %s, warning %q; want cpu with a warning", s.Provider(), warn.String())
	}
}

// TestPaired: versions of a model run in one process against the
// baseline; the same model scores 1, a rescaled one is told apart.
func TestPaired(t *testing.T) {
	dir := t.TempDir()
	base := writeClassifier(t, dir, 1)
	other := writeClassifier(t, t.TempDir(), 2) // weights twice as large
	inputs, err := GenerateInputs(base, map[string][]int64{"x": {2, 8}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	p50, res, err := Paired(context.Background(), PairedConfig{Baseline: base, Models: []string{base, other}, Inputs: inputs,
		Warmup: 1, Runs: 5, Options: Options{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if p50 <= 0 || len(res) != 2 || res[0].Path != base || res[1].Path != other {
		t.Fatalf("p50 %v, results %+v", p50, res)
	}
	for i, r := range res {
		if r.P50 <= 0 || r.Speedup <= 0 || r.SpeedupMin <= 0 || math.IsInf(r.Speedup, 0) {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if res[0].Worst.Cosine != 1 || res[0].Worst.MSE != 0 {
		t.Errorf("the baseline against itself: %+v", res[0].Worst)
	}
	if res[1].Worst.MSE == 0 {
		t.Errorf("a model with other weights scored identical: %+v", res[1].Worst)
	}
	if _, _, err := Paired(context.Background(), PairedConfig{Baseline: base, Models: []string{base}, Inputs: inputs}); err == nil {
		t.Error("0 runs: no error")
	}
}
