// Package auto quantizes with measurements: static int8 calibrated on
// sample inputs, and (Search) the plan that meets an accuracy target,
// chosen by running candidates in onnxruntime. It sits above quantize (the
// rewriting) and quantize/bench (onnxruntime).
package auto

import (
	"context"

	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
)

// Calibration methods.
const (
	MinMax     = "minmax"
	Percentile = "percentile"
)

// Samples is where calibration and search inputs come from: a directory of
// .npy files, or inputs generated from seeds for the given shapes.
type Samples struct {
	// Dir holds the samples: one subdirectory per sample with NAME.npy for
	// each model input; or, for a model with one input, one .npy file per
	// sample; or the files NAME.npy of one sample.
	Dir string
	// Shapes bind dynamic dimensions of generated inputs (when Dir is "").
	Shapes map[string][]int64
	// Count is the number of generated samples (default 8).
	Count int
	Seed  int64
}

// sampleSet is the resolved list of samples of a model.
type sampleSet struct {
	model string
	info  *bench.ModelInfo
	files []map[string]string // by input name, when read from a directory
	n     int
	s     Samples
}

func openSamples(model string, s Samples) (*sampleSet, error) {
	info, err := bench.ReadModelInfo(model)
	if err != nil {
		return nil, err
	}
	set := &sampleSet{model: model, info: info, s: s}
	if s.Dir == "" {
		set.n = s.Count
		if set.n <= 0 {
			set.n = 8
		}
		return set, nil
	}
	if set.files, err = listSamples(s.Dir, info); err != nil {
		return nil, err
	}
	set.n = len(set.files)
	return set, nil
}

// listSamples finds the samples in dir (see Samples.Dir).
func listSamples(dir string, info *bench.ModelInfo) ([]map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("calibration inputs: %w", err)
	}
	names := make([]string, len(info.Inputs))
	for i, in := range info.Inputs {
		names[i] = in.Name
	}
	var subdirs, npys []string
	for _, e := range entries {
		switch {
		case e.IsDir():
			subdirs = append(subdirs, e.Name())
		case strings.HasSuffix(e.Name(), ".npy"):
			npys = append(npys, e.Name())
		}
	}
	sort.Strings(subdirs)
	sort.Strings(npys)
	byName := func(d string) (map[string]string, error) {
		m := map[string]string{}
		for _, n := range names {
			p := filepath.Join(d, n+".npy")
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("calibration inputs: sample %s has no %s.npy (the model's inputs are %s)", d, n, strings.Join(names, ", "))
			}
			m[n] = p
		}
		return m, nil
	}
	var out []map[string]string
	switch {
	case len(subdirs) > 0:
		for _, sd := range subdirs {
			m, err := byName(filepath.Join(dir, sd))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	case len(names) == 1 && len(npys) > 0:
		for _, f := range npys {
			out = append(out, map[string]string{names[0]: filepath.Join(dir, f)})
		}
	default:
		m, err := byName(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("calibration inputs: no .npy files in %s", dir)
	}
	return out, nil
}

// sample returns sample i, in the model's input order. Only one sample is
// in memory at a time.
func (s *sampleSet) sample(i int) ([]bench.Tensor, error) {
	if s.files == nil {
		return bench.GenerateInputs(s.model, s.s.Shapes, s.s.Seed+int64(i))
	}
	out := make([]bench.Tensor, 0, len(s.info.Inputs))
	for _, in := range s.info.Inputs {
		t, err := bench.ReadNPY(s.files[i][in.Name], in.Name)
		if err != nil {
			return nil, fmt.Errorf("calibration inputs: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// rangeStats are the running statistics of one activation over the
// samples: its range, and in a second pass a histogram over that range.
type rangeStats struct {
	lo, hi float64
	hist   []int64
	n      int64
}

const histBins = 2048

func (r *rangeStats) addRange(v []float64) {
	for _, x := range v {
		if x < r.lo {
			r.lo = x
		}
		if x > r.hi {
			r.hi = x
		}
	}
}

func (r *rangeStats) addHist(v []float64) {
	if r.hist == nil {
		r.hist = make([]int64, histBins)
	}
	w := (r.hi - r.lo) / histBins
	for _, x := range v {
		b := histBins - 1
		if w > 0 {
			b = min(histBins-1, max(0, int((x-r.lo)/w)))
		}
		r.hist[b]++
		r.n++
	}
}

// percentileRange cuts (100-p)/2 percent of the values off each tail.
func (r *rangeStats) percentileRange(p float64) (float64, float64) {
	if r.n == 0 || r.hi <= r.lo {
		return r.lo, r.hi
	}
	cut := int64(math.Floor(float64(r.n) * (100 - p) / 200))
	w := (r.hi - r.lo) / histBins
	lo, hi := r.lo, r.hi
	var acc int64
	for b := 0; b < histBins; b++ {
		if acc+r.hist[b] > cut {
			lo = r.lo + float64(b)*w
			break
		}
		acc += r.hist[b]
	}
	acc = 0
	for b := histBins - 1; b >= 0; b-- {
		if acc+r.hist[b] > cut {
			hi = r.lo + float64(b+1)*w
			break
		}
		acc += r.hist[b]
	}
	return lo, hi
}

// CalibrationOptions say how activation ranges are measured.
type CalibrationOptions struct {
	Method     string  // MinMax (default) or Percentile
	Percentile float64 // for Percentile: the share of values kept (default 99.99)
	// PieceBudget is the weight one piece of the model may hold: a model
	// with more runs in pieces (see planPieces). 0: DefaultPieceBudget;
	// negative: always whole.
	PieceBudget int64
	bench.Options
}

// Calibrate runs the model on every sample with the given values as extra
// outputs and returns their ranges. Samples are read, run and folded into
// running statistics one at a time, so memory holds one sample's
// activations, never all of them; the percentile method makes a second
// pass for a fixed-range histogram.
func Calibrate(ctx context.Context, model string, values []string, samples Samples, o CalibrationOptions) (map[string]quantize.Range, error) {
	ranges, _, err := calibrate(ctx, model, values, samples, o)
	return ranges, err
}

// calibrate is Calibrate, and says how the model ran when it is too large
// for one piece ("" when it fits).
func calibrate(ctx context.Context, model string, values []string, samples Samples, o CalibrationOptions) (map[string]quantize.Range, string, error) {
	switch o.Method {
	case "":
		o.Method = MinMax
	case MinMax, Percentile:
	default:
		return nil, "", fmt.Errorf("calibration %q: want %s or %s", o.Method, MinMax, Percentile)
	}
	if o.Percentile == 0 {
		o.Percentile = 99.99
	}
	if o.Percentile <= 50 || o.Percentile > 100 {
		return nil, "", fmt.Errorf("calibration percentile %g: want more than 50, at most 100", o.Percentile)
	}
	set, err := openSamples(model, samples)
	if err != nil {
		return nil, "", err
	}
	budget := o.PieceBudget
	if budget == 0 {
		budget = DefaultPieceBudget
	}
	plan, err := planPieces(model, budget, values)
	if err != nil {
		return nil, "", fmt.Errorf("calibrate: %w", err)
	}
	tmp, err := os.MkdirTemp("", "modelctl-calibrate-")
	if err != nil {
		return nil, "", fmt.Errorf("calibrate: %w", err)
	}
	defer os.RemoveAll(tmp)
	stats := map[string]*rangeStats{}
	for _, v := range values {
		stats[v] = &rangeStats{lo: math.Inf(1), hi: math.Inf(-1)}
	}
	fold := func(pass int, t bench.Tensor) error {
		st, ok := stats[t.Name]
		if !ok {
			return nil
		}
		v, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("activation %s: %w", t.Name, err)
		}
		if pass == 0 {
			st.addRange(v)
		} else {
			st.addHist(v)
		}
		return nil
	}
	passes := 1
	if o.Method == Percentile {
		passes = 2
	}
	note := plan.note
	if plan.parts != nil {
		// Each piece makes both passes while it is loaded: the ranges of
		// the values it computes are complete after its first.
		note = fmt.Sprintf("ran in %d pieces of at most %d MiB of weights", len(plan.parts), budget>>20)
		if plan.note != "" {
			note += "; " + plan.note
		}
		if _, err := runPieces(ctx, plan, set, o.Options, tmp, pieceRun{extra: values, passes: passes, value: func(pass, i int, t bench.Tensor) error {
			if err := fold(pass, t); err != nil {
				return fmt.Errorf("sample %d: %w", i, err)
			}
			return nil
		}}); err != nil {
			return nil, note, fmt.Errorf("calibrate: %w", err)
		}
	} else if err := calibrateWhole(ctx, model, values, set, o, tmp, passes, fold); err != nil {
		return nil, note, err
	}
	for name, st := range stats {
		if math.IsInf(st.lo, 0) || math.IsInf(st.hi, 0) || math.IsNaN(st.lo) || math.IsNaN(st.hi) {
			return nil, note, fmt.Errorf("calibrate: activation %s: no finite values seen", name)
		}
	}
	out := map[string]quantize.Range{}
	for name, st := range stats {
		lo, hi := st.lo, st.hi
		if o.Method == Percentile {
			lo, hi = st.percentileRange(o.Percentile)
		}
		out[name] = quantize.Range{Min: float32(lo), Max: float32(hi)}
	}
	return out, note, nil
}

// calibrateWhole runs a copy of the model, nothing quantized, with the
// values as extra outputs, in one session.
func calibrateWhole(ctx context.Context, model string, values []string, set *sampleSet, o CalibrationOptions, tmp string, passes int, fold func(int, bench.Tensor) error) error {
	calib := filepath.Join(tmp, "calibrate.onnx")
	if _, err := quantize.Quantize(ctx, model, calib, quantize.Options{ExcludeOpTypes: []string{"MatMul", "Gemm"}, ExtraOutputs: values}); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	sess, err := bench.Load(ctx, calib, o.Options)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	defer sess.Close()
	for pass := 0; pass < passes; pass++ {
		for i := 0; i < set.n; i++ {
			in, err := set.sample(i)
			if err != nil {
				return err
			}
			outs, err := sess.Infer(ctx, in)
			if err != nil {
				return fmt.Errorf("calibrate: sample %d: %w", i, err)
			}
			for _, t := range outs {
				if err := fold(pass, t); err != nil {
					return fmt.Errorf("calibrate: sample %d: %w", i, err)
				}
			}
		}
		if pass == 0 {
			// The histogram needs finite ranges.
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}
