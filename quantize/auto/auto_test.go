package auto

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

func TestPercentileRange(t *testing.T) {
	// 10000 values 0..9999 plus two outliers.
	var v []float64
	for i := 0; i < 10000; i++ {
		v = append(v, float64(i))
	}
	v = append(v, -1e6, 1e6)
	st := &rangeStats{lo: math.Inf(1), hi: math.Inf(-1)}
	st.addRange(v)
	st.addHist(v)
	if st.lo != -1e6 || st.hi != 1e6 || st.n != int64(len(v)) {
		t.Fatalf("range %g..%g over %d values", st.lo, st.hi, st.n)
	}
	w := 2e6 / histBins
	for _, tc := range []struct {
		p      float64
		lo, hi float64 // expected, to within one bin
	}{
		{100, -1e6, 1e6},      // keeps everything
		{99.9, 0, 10000},      // cuts the two outliers (5 values a side)
		{99.99999, -1e6, 1e6}, // cuts less than one value
	} {
		lo, hi := st.percentileRange(tc.p)
		if math.Abs(lo-tc.lo) > w || math.Abs(hi-tc.hi) > w {
			t.Errorf("percentile %g: %g..%g, want %g..%g (bin %g)", tc.p, lo, hi, tc.lo, tc.hi, w)
		}
	}
}

func TestListSamples(t *testing.T) {
	write := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := bench.WriteNPY(p, bench.Tensor{Name: "x", DType: bench.Float32, Shape: []int64{1}, Data: []float32{1}}); err != nil {
			t.Fatal(err)
		}
	}
	one := &bench.ModelInfo{Inputs: []bench.ValueInfo{{Name: "x"}}}
	two := &bench.ModelInfo{Inputs: []bench.ValueInfo{{Name: "x"}, {Name: "y"}}}
	d1 := t.TempDir() // one-input model: every file a sample
	write(filepath.Join(d1, "a.npy"))
	write(filepath.Join(d1, "b.npy"))
	d2 := t.TempDir() // subdirectories
	for _, s := range []string{"s0", "s1", "s2"} {
		write(filepath.Join(d2, s, "x.npy"))
		write(filepath.Join(d2, s, "y.npy"))
	}
	d3 := t.TempDir() // one sample, files named by input
	write(filepath.Join(d3, "x.npy"))
	write(filepath.Join(d3, "y.npy"))
	d4 := t.TempDir() // a sample lacks an input
	write(filepath.Join(d4, "s0", "x.npy"))
	for _, tc := range []struct {
		name string
		dir  string
		info *bench.ModelInfo
		n    int
		err  string
	}{
		{"files", d1, one, 2, ""},
		{"subdirectories", d2, two, 3, ""},
		{"named files", d3, two, 1, ""},
		{"missing input", d4, two, 0, "has no y.npy"},
		{"missing dir", filepath.Join(d1, "nope"), one, 0, "no such file"},
		{"empty", t.TempDir(), one, 0, "has no x.npy"},
	} {
		got, err := listSamples(tc.dir, tc.info)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != tc.n {
			t.Errorf("%s: %d samples, %v; want %d", tc.name, len(got), err, tc.n)
		}
	}
}

func TestChoose(t *testing.T) {
	cs := []Candidate{
		{Name: "int4", Bytes: 16, Speedup: 0.9, Meets: true},
		{Name: "int8", Bytes: 25, Speedup: 2.5, Meets: true},
		{Name: "int8-pc", Bytes: 26, Speedup: 2.6, Meets: false}, // fastest, but misses
		{Name: "fp16", Bytes: 50, Speedup: 0.8, Meets: true},
	}
	for _, tc := range []struct {
		prefer string
		cs     []Candidate
		want   int
	}{
		{PreferSpeed, cs, 1},
		{PreferSize, cs, 0},
		{PreferSpeed, []Candidate{{Meets: false}, {Meets: false}}, -1},
		{PreferSpeed, []Candidate{{Bytes: 30, Speedup: 2, Meets: true}, {Bytes: 20, Speedup: 2, Meets: true}}, 1}, // tie: smaller
		{PreferSize, []Candidate{{Bytes: 20, Speedup: 1, Meets: true}, {Bytes: 20, Speedup: 2, Meets: true}}, 1},  // tie: faster
		// Within 5% of the fastest counts as as fast: the smallest of those.
		{PreferSpeed, []Candidate{{Bytes: 25, Speedup: 2.5, Meets: true}, {Bytes: 26, Speedup: 2.45, Meets: true}, {Bytes: 16, Speedup: 2.4, Meets: true}, {Bytes: 8, Speedup: 2.3, Meets: true}}, 2},
		{PreferSpeed, []Candidate{{Bytes: 25, Speedup: 1.0, Meets: true}, {Bytes: 50, Speedup: 0.96, Meets: true}}, 0},
	} {
		if got := choose(tc.cs, tc.prefer); got != tc.want {
			t.Errorf("choose(%s) = %d, want %d", tc.prefer, got, tc.want)
		}
	}
	tg := Target{MinCosine: 0.99, MaxMSE: 0.01}
	for _, tc := range []struct {
		q    bench.Quality
		want bool
	}{
		{bench.Quality{Cosine: 0.995, MSE: 0.001}, true},
		{bench.Quality{Cosine: 0.985, MSE: 0.001}, false},
		{bench.Quality{Cosine: 0.995, MSE: 0.02}, false},
		{bench.Quality{Cosine: 0.995, MSE: 0.001, MAE: 9}, true}, // MAE not asked
	} {
		if got := tg.met(tc.q); got != tc.want {
			t.Errorf("%s met(%+v) = %v", tg, tc.q, got)
		}
	}
}

func ortLib(t *testing.T) {
	t.Helper()
	if _, err := bench.LibraryPath(""); err != nil {
		t.Fatalf("onnxruntime: %v (run make ort)", err)
	}
}

func model(t *testing.T, hidden int) string {
	t.Helper()
	p, err := synth.Generate(t.TempDir(), synth.Config{Layers: 1, Hidden: hidden, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStatic: calibration measures ranges that contain the percentile
// ones; the static model in each form runs in onnxruntime close to FP32,
// with no range computed at run time, and says how it was made.
func TestStatic(t *testing.T) {
	ortLib(t)
	ctx := context.Background()
	in := model(t, 128)
	samples := Samples{Shapes: map[string][]int64{"input": {1, 8, 128}}, Count: 3}
	plan, _, err := quantize.Plan(ctx, in, quantize.Options{Mode: quantize.ModeInt8Static})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 6 {
		t.Fatalf("plan of %d nodes, want 6", len(plan))
	}
	acts := []string{plan[0].Activation, plan[4].Activation}
	mm, err := Calibrate(ctx, in, acts, samples, CalibrationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := Calibrate(ctx, in, acts, samples, CalibrationOptions{Method: Percentile, Percentile: 99})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		if !(mm[a].Min < 0 && mm[a].Max > 0) || pc[a].Min < mm[a].Min || pc[a].Max > mm[a].Max || pc[a] == mm[a] {
			t.Errorf("%s: minmax %+v, percentile 99 %+v: want a wider minmax range", a, mm[a], pc[a])
		}
	}
	inputs, err := bench.GenerateInputs(in, samples.Shapes, 99)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{quantize.FormQDQ, quantize.FormQLinear} {
		out := filepath.Join(t.TempDir(), "s.onnx")
		res, err := Quantize(ctx, in, out, Options{Options: quantize.Options{Mode: quantize.ModeInt8Static, Form: form}, Samples: samples})
		if err != nil {
			t.Fatal(err)
		}
		wantCal := 4 // distinct A inputs: ln1 (q,k,v), ctx (o), ln2 (up), act (down)
		if form == quantize.FormQLinear {
			wantCal += 6
		}
		if res.Calibrated != wantCal {
			t.Errorf("%s: calibrated %d values, want %d", form, res.Calibrated, wantCal)
		}
		m, err := onnx.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		ops := map[string]int{}
		for _, n := range m.Graph().GetNode() {
			ops[n.GetOpType()]++
		}
		if ops["DynamicQuantizeLinear"] != 0 || ops["QuantizeLinear"] != 4 {
			t.Errorf("%s: ops %v: want 4 QuantizeLinear (one per activation) and no dynamic ones", form, ops)
		}
		if form == quantize.FormQLinear && ops["QLinearMatMul"] != 6 {
			t.Errorf("qlinear: ops %v, want 6 QLinearMatMul", ops)
		}
		md := quantize.ReadMetadata(m.Proto)
		q := manifests.AnnotationQuantizationPrefix
		if md[q+"activations"] != "uint8 static" || md[q+"static_form"] != form || md[q+"calibration"] != MinMax || md[manifests.AnnotationQuantizationMethod] != "static" {
			t.Errorf("%s: metadata %v", form, md)
		}
		_, pr, err := bench.Paired(ctx, bench.PairedConfig{Baseline: in, Models: []string{out}, Inputs: inputs, Runs: 1, Options: bench.Options{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if pr[0].Worst.Cosine < 0.995 {
			t.Errorf("%s: cosine %.6f against FP32, want >= 0.995", form, pr[0].Worst.Cosine)
		}
	}
}

// TestSearch: a reachable target writes a model that meets it and
// records the plan; an unreachable one writes nothing and says why.
func TestSearch(t *testing.T) {
	ortLib(t)
	ctx := context.Background()
	in := model(t, 128)
	samples := Samples{Shapes: map[string][]int64{"input": {1, 8, 128}}, Count: 2}
	dir := t.TempDir()
	out := filepath.Join(dir, "auto.onnx")
	for _, prefer := range []string{PreferSpeed, PreferSize} {
		res, err := Quantize(ctx, in, out, Options{Target: &Target{MinCosine: 0.99, MaxMSE: 0.05}, Prefer: prefer, Samples: samples, Bench: bench.Options{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		s := res.Search
		if len(s.Candidates) != 6 {
			t.Errorf("%s: %d candidates, want 6", prefer, len(s.Candidates))
		}
		best := s.Candidates[choose(s.Candidates, prefer)]
		if s.Chosen != best.Name || !best.Meets || best.Quality.Cosine < 0.99 || !strings.Contains(s.Why, best.Name+" meets cosine >= 0.99, MSE <= 0.05") {
			t.Errorf("%s: chose %s (%+v): %s", prefer, s.Chosen, best, s.Why)
		}
		if prefer == PreferSize {
			for _, c := range s.Candidates {
				if c.Meets && c.Bytes < best.Bytes {
					t.Errorf("size: chose %s (%d bytes) over %s (%d bytes)", best.Name, best.Bytes, c.Name, c.Bytes)
				}
			}
		}
		m, err := onnx.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		md := quantize.ReadMetadata(m.Proto)
		q := manifests.AnnotationQuantizationPrefix
		if md[q+"auto.target"] != "cosine >= 0.99, MSE <= 0.05" || md[q+"auto.prefer"] != prefer || md[q+"auto.why"] != s.Why || md[q+"auto.plan"] == "" {
			t.Errorf("%s: metadata %v", prefer, md)
		}
	}
	// Above what any int8 plan reaches: the search keeps the nodes that
	// lose most in float until int8 meets it.
	res, err := Quantize(ctx, in, out, Options{Target: &Target{MinCosine: 0.99995}, Samples: samples, Bench: bench.Options{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var kept *Candidate
	for i, c := range res.Search.Candidates {
		if c.Meets && c.opts.Mode == quantize.ModeInt8 && len(c.opts.ExcludeNodes) > 0 {
			kept = &res.Search.Candidates[i]
		}
		if (c.Name == "int8" || c.Name == "int8-pc") && c.Meets {
			t.Fatalf("int8 met cosine 0.99995 (%v): the test needs a target above it", c.Quality)
		}
	}
	if kept == nil || !strings.HasPrefix(kept.Name, "int8-pc-float") || kept.Quality.Cosine < 0.99995 ||
		!strings.Contains(kept.Plan, kept.opts.ExcludeNodes[0]) {
		t.Errorf("no int8 plan with nodes kept in float met the target: %+v", res.Search.Candidates)
	}

	bad := filepath.Join(dir, "never.onnx")
	_, err = Quantize(ctx, in, bad, Options{Target: &Target{MinCosine: 0.99999999}, Samples: samples, Bench: bench.Options{Threads: 1}})
	if err == nil || !strings.Contains(err.Error(), "no plan meets cosine >= 0.99999999") {
		t.Errorf("unreachable target: %v", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("unreachable target left %s: %v", bad, err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Target: &Target{MinCosine: 1.5}, Samples: samples}, "want a cosine in (0, 1]"},
		{Options{Target: &Target{MinCosine: 0.9}, Prefer: "cheap", Samples: samples}, "--prefer"},
		{Options{Options: quantize.Options{Mode: quantize.ModeInt8Static}, Samples: Samples{Dir: filepath.Join(dir, "none")}}, "no such file"},
		{Options{Options: quantize.Options{Mode: quantize.ModeInt8Static}, Samples: samples, Calibration: CalibrationOptions{Method: "entropy"}}, "want minmax or percentile"},
		{Options{Options: quantize.Options{Mode: quantize.ModeInt8Static, PerChannel: true}, Samples: samples}, "int8-static takes per-tensor weights"},
		{Options{Options: quantize.Options{Mode: quantize.ModeInt8Static, Form: "qop"}, Samples: samples}, `static form "qop"`},
	} {
		if _, err := Quantize(ctx, in, filepath.Join(dir, "x.onnx"), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestAgreement(t *testing.T) {
	for _, tc := range []struct {
		name          string
		a, b          [][]float64 // samples
		cos, mse, mae float64
	}{
		{"equal", [][]float64{{1, 2}, {3, 4}}, [][]float64{{1, 2}, {3, 4}}, 1, 0, 0},
		// One value per sample: the cosine is over the samples together.
		{"scalar outputs", [][]float64{{1}, {0}}, [][]float64{{0}, {1}}, 0, 1, 1},
		{"scaled", [][]float64{{1, 1}}, [][]float64{{2, 2}}, 1, 1, 1},
		{"opposite", [][]float64{{1, -1}}, [][]float64{{-1, 1}}, -1, 4, 2},
		{"both zero", [][]float64{{0, 0}}, [][]float64{{0, 0}}, 1, 0, 0},
	} {
		g := &agreement{}
		for i := range tc.a {
			g.add(tc.a[i], tc.b[i])
		}
		q := g.quality()
		if math.Abs(q.Cosine-tc.cos) > 1e-12 || math.Abs(q.MSE-tc.mse) > 1e-12 || math.Abs(q.MAE-tc.mae) > 1e-12 {
			t.Errorf("%s: %+v, want cosine %g MSE %g MAE %g", tc.name, q, tc.cos, tc.mse, tc.mae)
		}
	}
	g := &agreement{}
	g.add([]float64{0, 0}, []float64{1, 0}) // FP32 all zero, the model not
	if q := g.quality(); !math.IsNaN(q.Cosine) || (Target{MinCosine: 0.5}).met(q) {
		t.Errorf("zero against non-zero: %+v, want a NaN cosine that meets no target", q)
	}
}

// TestSearchNothingToQuantize: silero's weights are all inside If
// subgraphs, so no plan changes it: the search says so and writes it as
// the default run does, instead of timing identical models.
func TestSearchNothingToQuantize(t *testing.T) {
	ortLib(t)
	in := onnxtest.Model(t, onnxtest.SileroVAD)
	out := filepath.Join(t.TempDir(), "auto.onnx")
	res, err := Quantize(context.Background(), in, out, Options{Target: &Target{MinCosine: 0.99},
		Samples: Samples{Shapes: map[string][]int64{"input": {1, 512}, "state": {2, 1, 128}}, Count: 1}, Bench: bench.Options{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Search
	if s.Chosen != "unchanged" || len(s.Candidates) != 0 || len(s.Unchanged) != 5 || !strings.Contains(s.Why, "no plan changes this model") {
		t.Errorf("search %+v", s)
	}
	if len(res.Quantized) != 0 {
		t.Errorf("quantized %v", res.Quantized)
	}
}
