package auto

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
)

// Preferences among the plans that meet a target.
const (
	PreferSpeed = "speed"
	PreferSize  = "size"
)

// Target is the accuracy a searched plan must keep against FP32, judged on
// the worst output of the worst sample. Zero MaxMSE/MaxMAE are not checked.
type Target struct {
	MinCosine float64 `json:"min_cosine"`
	MaxMSE    float64 `json:"max_mse,omitempty"`
	MaxMAE    float64 `json:"max_mae,omitempty"`
}

func (t Target) met(q bench.Quality) bool {
	return q.Cosine >= t.MinCosine && (t.MaxMSE == 0 || q.MSE <= t.MaxMSE) && (t.MaxMAE == 0 || q.MAE <= t.MaxMAE)
}

func (t Target) String() string {
	s := fmt.Sprintf("cosine >= %g", t.MinCosine)
	if t.MaxMSE > 0 {
		s += fmt.Sprintf(", MSE <= %g", t.MaxMSE)
	}
	if t.MaxMAE > 0 {
		s += fmt.Sprintf(", MAE <= %g", t.MaxMAE)
	}
	return s
}

// Candidate is one plan the search tried and what it measured.
type Candidate struct {
	Name    string        `json:"name"`
	Plan    string        `json:"plan"`
	Bytes   int64         `json:"bytes"` // model + data
	Quality bench.Quality `json:"quality"`
	Speedup float64       `json:"speedup"` // FP32 p50 over this p50, paired
	Meets   bool          `json:"meets"`
	opts    quantize.Options
}

// SearchResult is the search's account: every candidate, the choice, why.
type SearchResult struct {
	Target     Target      `json:"target"`
	Prefer     string      `json:"prefer"`
	FP32Bytes  int64       `json:"fp32_bytes"`
	Candidates []Candidate `json:"candidates"`
	// Unchanged are the plans that quantize nothing in this model.
	Unchanged []string `json:"unchanged,omitempty"`
	Chosen    string   `json:"chosen"`
	Why       string   `json:"why"`
	// Memory says how the models ran when FP32 was too large for one
	// piece: in pieces (and how speed was measured), or whole and why.
	Memory string `json:"memory,omitempty"`
}

// candidates are the plans the search tries, smallest first: int4 (with
// int8 activations), int8 dynamic per tensor and per channel, int8 static,
// and the same int8 plans with the nodes whose weights quantize worst kept
// in float, then fp16. Every int8/int4 plan keeps the cost model.
func candidates(base quantize.Options) []Candidate {
	mk := func(name, plan string, f func(o *quantize.Options)) Candidate {
		o := base
		o.Activations, o.ExtraOutputs = nil, nil
		f(&o)
		return Candidate{Name: name, Plan: plan, opts: o}
	}
	return []Candidate{
		mk("int4", "int4 MatMulNBits (block 32, accuracy_level 4) on every node the cost model keeps", func(o *quantize.Options) { o.Mode = quantize.ModeInt4 }),
		mk("int4+int8", "int4 on the feed-forward weights (N > K or K > N), int8 per channel on the square ones", func(o *quantize.Options) { o.Mode = quantize.ModeInt4 }),
		mk("int8", "int8 dynamic, per-tensor weights", func(o *quantize.Options) { o.Mode = quantize.ModeInt8 }),
		mk("int8-pc", "int8 dynamic, per-channel weights", func(o *quantize.Options) { o.Mode, o.PerChannel = quantize.ModeInt8, true }),
		// Per-tensor: onnxruntime 1.30 does not fuse per-channel QDQ
		// weights into its integer MatMul (measured 0.07x on hello_deepa).
		mk("int8-static", "int8 static (QDQ, min-max calibration), per-tensor weights", func(o *quantize.Options) {
			o.Mode, o.PerChannel, o.Form = quantize.ModeInt8Static, false, quantize.FormQDQ
		}),
		mk("fp16", "fp16 weights and compute", func(o *quantize.Options) { o.Mode = quantize.ModeFP16 }),
	}
}

// Search tries the candidate plans on the samples, each against FP32 in
// onnxruntime (quality over all samples together, per output, judged on
// the worst output; speed paired with FP32 in one process on the first
// sample), and writes the plan that meets the target
// and is fastest (or smallest, with PreferSize). The plan, the target and
// the reason are recorded in the model's metadata. One candidate model is
// on disk and loaded at a time; reference outputs are kept on disk.
func Search(ctx context.Context, in, out string, o Options) (*Result, error) {
	t := *o.Target
	if t.MinCosine <= 0 || t.MinCosine > 1 || t.MaxMSE < 0 || t.MaxMAE < 0 {
		return nil, fmt.Errorf("quantize: target %s: want a cosine in (0, 1] and non-negative MSE/MAE", t)
	}
	switch o.Prefer {
	case "":
		o.Prefer = PreferSpeed
	case PreferSpeed, PreferSize:
	default:
		return nil, fmt.Errorf("quantize: --prefer %q: want speed or size", o.Prefer)
	}
	set, err := openSamples(in, o.Samples)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "modelctl-search-")
	if err != nil {
		return nil, fmt.Errorf("quantize: search: %w", err)
	}
	defer os.RemoveAll(tmp)
	refDir := filepath.Join(tmp, "ref")
	if err := os.Mkdir(refDir, 0o700); err != nil {
		return nil, fmt.Errorf("quantize: search: %w", err)
	}
	budget := o.PieceBudget
	if budget == 0 {
		budget = DefaultPieceBudget
	}
	fp32Plan, err := planPieces(in, budget, nil)
	if err != nil {
		return nil, fmt.Errorf("quantize: search: %w", err)
	}
	keepRef := func(i int, outs []bench.Tensor) error {
		for j, t := range outs {
			if err := bench.WriteNPY(filepath.Join(refDir, fmt.Sprintf("%d_%d.npy", i, j)), t); err != nil {
				return err
			}
		}
		return nil
	}
	ev := &evaluator{ctx: ctx, in: in, tmp: tmp, refDir: refDir, set: set, o: o, t: t, budget: budget}
	var memory []string
	if fp32Plan.parts != nil {
		// Too large for one session: every model runs in pieces, and
		// speed is the sum of each piece's fastest run, FP32's measured
		// here, once.
		ev.pieces = true
		if ev.fp32Time, err = runPieces(ctx, fp32Plan, set, o.Bench, tmp, pieceRun{outputs: keepRef, timeRuns: pieceTimingRuns}); err != nil {
			return nil, fmt.Errorf("quantize: search: FP32 reference: %w", err)
		}
		memory = append(memory, fmt.Sprintf("FP32 (%d MiB of weights) ran in %d pieces of at most %d MiB; speeds are sums of each piece's fastest of %d runs, not paired", fp32Plan.weight>>20, len(fp32Plan.parts), budget>>20, pieceTimingRuns))
		if fp32Plan.note != "" {
			memory = append(memory, fp32Plan.note)
		}
	} else {
		if fp32Plan.note != "" {
			memory = append(memory, fp32Plan.note)
		}
		if err := runSamples(ctx, in, set, o.Bench, keepRef); err != nil {
			return nil, fmt.Errorf("quantize: search: FP32 reference: %w", err)
		}
	}
	fp32Plan = nil
	fp32Bytes, err := bench.ModelBytes(in)
	if err != nil {
		return nil, err
	}
	first, err := set.sample(0)
	if err != nil {
		return nil, err
	}
	res := &SearchResult{Target: t, Prefer: o.Prefer, FP32Bytes: fp32Bytes}
	defer func() {
		var notes []string
		for _, n := range append(memory, ev.notes...) {
			if !slices.Contains(notes, n) {
				notes = append(notes, n)
			}
		}
		res.Memory = strings.Join(notes, "; ")
	}()
	var static *quantize.Options
	for _, c := range candidates(o.Options) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch c.Name {
		case "int8-static":
			if static == nil {
				qo, _, _, err := calibrated(ctx, in, Options{Options: c.opts, Samples: o.Samples, Calibration: CalibrationOptions{Options: o.Bench, PieceBudget: o.PieceBudget}})
				if err != nil {
					return nil, err
				}
				static = &qo
			}
			c.opts = *static
		case "int4+int8":
			plan, _, err := quantize.Plan(ctx, in, c.opts)
			if err != nil {
				return nil, err
			}
			var square []string
			for _, p := range plan {
				if p.K == p.N {
					square = append(square, p.Node)
				}
			}
			if len(square) == 0 || len(square) == len(plan) {
				continue // the same as int4 or as int8
			}
			c.opts.NodeModes = map[string]quantize.Mode{}
			for _, n := range square {
				c.opts.NodeModes[n] = quantize.ModeInt8
			}
			c.opts.PerChannel = true
		}
		path := filepath.Join(tmp, c.Name+".onnx")
		worst, bytes, changed, err := ev.quality(path, c.opts)
		if err != nil {
			return nil, fmt.Errorf("quantize: search: candidate %s: %w", c.Name, err)
		}
		if !changed {
			// The plan changes nothing (no weight it applies to): it is
			// FP32, and timing it would only measure noise.
			res.Unchanged = append(res.Unchanged, c.Name)
			continue
		}
		c.Bytes = bytes
		c.Quality, c.Meets = worst, t.met(worst)
		if c.Meets {
			if c.Speedup, err = ev.speedup(path, first); err != nil {
				return nil, fmt.Errorf("quantize: search: candidate %s: %w", c.Name, err)
			}
		}
		removeModel(path)
		res.Candidates = append(res.Candidates, c)
	}
	if kept, err := ev.floatKept(res, first); err != nil {
		return nil, err
	} else if kept != nil {
		res.Candidates = append(res.Candidates, *kept)
	}
	best := choose(res.Candidates, o.Prefer)
	if len(res.Candidates) == 0 {
		// Nothing in the model can be quantized (e.g. every weight inside
		// If subgraphs): the default run writes it as it is.
		res.Chosen = "unchanged"
		res.Why = fmt.Sprintf("no plan changes this model (%s quantize nothing in it), so it is written as the default int8 run leaves it: FP32", strings.Join(res.Unchanged, ", "))
		qo := o.Options
		qo.Activations, qo.ExtraOutputs = nil, nil
		qo.Notes = map[string]string{"auto.target": t.String(), "auto.prefer": o.Prefer, "auto.plan": "none", "auto.why": res.Why}
		sum, err := quantize.Quantize(ctx, in, out, qo)
		if err != nil {
			return nil, err
		}
		return &Result{Summary: sum, Search: res}, nil
	}
	if best < 0 {
		return nil, fmt.Errorf("quantize: no plan meets %s on %d samples: %s", t, set.n, describe(res.Candidates))
	}
	c := res.Candidates[best]
	res.Chosen = c.Name
	res.Why = why(res, c)
	qo := c.opts
	qo.Notes = map[string]string{
		"auto.target":     t.String(),
		"auto.prefer":     o.Prefer,
		"auto.plan":       c.Plan,
		"auto.why":        res.Why,
		"auto.cosine":     strconv.FormatFloat(c.Quality.Cosine, 'f', 6, 64),
		"auto.candidates": describe(res.Candidates),
	}
	sum, err := quantize.Quantize(ctx, in, out, qo)
	if err != nil {
		return nil, err
	}
	return &Result{Summary: sum, Search: res}, nil
}

// speedTie is how close two speedups must be to count as equal: paired
// timings on a shared machine move by a few percent from run to run
// (identical models measure 0.94-1.07x in docs/quantize.md's table).
const speedTie = 0.05

// choose picks the candidate to write: among those that meet the target,
// the fastest (PreferSpeed), counting speedups within speedTie of the best
// as equal and taking the smallest of those; or the smallest (PreferSize;
// ties to the faster). -1 when none meets it.
func choose(cs []Candidate, prefer string) int {
	fastest := 0.0
	for _, c := range cs {
		if c.Meets {
			fastest = math.Max(fastest, c.Speedup)
		}
	}
	best := -1
	for i, c := range cs {
		if !c.Meets || (prefer != PreferSize && c.Speedup < fastest*(1-speedTie)) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := cs[best]
		if c.Bytes < b.Bytes || (c.Bytes == b.Bytes && c.Speedup > b.Speedup) {
			best = i
		}
	}
	return best
}

func why(r *SearchResult, c Candidate) string {
	var fail []string
	for _, o := range r.Candidates {
		if !o.Meets {
			fail = append(fail, fmt.Sprintf("%s (cosine %.4f)", o.Name, o.Quality.Cosine))
		}
	}
	s := fmt.Sprintf("%s meets %s (cosine %.6f, MSE %.3g, MAE %.3g) and is the ", c.Name, r.Target, c.Quality.Cosine, c.Quality.MSE, c.Quality.MAE)
	if r.Prefer == PreferSize {
		s += fmt.Sprintf("smallest that does (%.1f%% of FP32, %.2fx its speed)", 100*float64(c.Bytes)/float64(r.FP32Bytes), c.Speedup)
	} else {
		s += fmt.Sprintf("smallest of the fastest that do (%.2fx FP32, %.1f%% of its size; speeds within %.0f%% count as equal)", c.Speedup, 100*float64(c.Bytes)/float64(r.FP32Bytes), 100*speedTie)
	}
	if len(fail) > 0 {
		s += "; missed the target: " + strings.Join(fail, ", ")
	}
	return s
}

func describe(cs []Candidate) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s cos %.4f", c.Name, c.Quality.Cosine)
		if c.Meets {
			parts[i] += fmt.Sprintf(" %.2fx", c.Speedup)
		}
	}
	return strings.Join(parts, "; ")
}

// runSamples runs model on every sample, one at a time, and hands fn the
// outputs.
func runSamples(ctx context.Context, model string, set *sampleSet, opts bench.Options, fn func(int, []bench.Tensor) error) error {
	sess, err := bench.Load(ctx, model, opts)
	if err != nil {
		return err
	}
	defer sess.Close()
	for i := 0; i < set.n; i++ {
		in, err := set.sample(i)
		if err != nil {
			return err
		}
		outs, err := sess.Infer(ctx, in)
		if err != nil {
			return err
		}
		if err := fn(i, outs); err != nil {
			return fmt.Errorf("sample %d: %w", i, err)
		}
	}
	return nil
}

// agreement accumulates, sample by sample, how one output agrees with
// FP32's over all samples together: a one-value output (a probability)
// has a meaningful cosine only across samples, and nothing but these sums
// is kept.
type agreement struct {
	ab, aa, bb, se, ae, maxAbs float64
	n                          int64
}

func (g *agreement) add(a, b []float64) {
	for i := range a {
		d := a[i] - b[i]
		g.ab += a[i] * b[i]
		g.aa += a[i] * a[i]
		g.bb += b[i] * b[i]
		g.se += d * d
		g.ae += math.Abs(d)
		g.maxAbs = math.Max(g.maxAbs, math.Abs(d))
	}
	g.n += int64(len(a))
}

func (g *agreement) quality() bench.Quality {
	q := bench.Quality{Cosine: 1, MaxAbs: g.maxAbs}
	if g.aa > 0 || g.bb > 0 {
		q.Cosine = g.ab / math.Sqrt(g.aa*g.bb)
	}
	if math.IsNaN(q.Cosine) || math.IsNaN(g.se) {
		q.Cosine = math.NaN()
	}
	if g.n > 0 {
		q.MSE, q.MAE = g.se/float64(g.n), g.ae/float64(g.n)
	}
	return q
}

// evaluator runs candidate models against the FP32 reference on disk.
type evaluator struct {
	ctx     context.Context
	in, tmp string
	refDir  string
	set     *sampleSet
	o       Options
	t       Target
	budget  int64
	// pieces: FP32 is too large for one session, so candidates run in
	// pieces too and are timed by the sum of their pieces (fp32Time is
	// FP32's); lastTime is the candidate quality last ran.
	pieces             bool
	fp32Time, lastTime time.Duration
	notes              []string
	// untimed: the runs judge quality alone (floatKept's per-node damage).
	untimed bool
}

// pieceTimingRuns are the timed runs of each piece, of which the fastest
// counts.
const pieceTimingRuns = 10

// quality quantizes in with opts into path and judges it on every sample;
// changed is false (and the files are gone) when the plan quantizes
// nothing. The model stays at path otherwise.
func (e *evaluator) quality(path string, opts quantize.Options) (q bench.Quality, bytes int64, changed bool, err error) {
	sum, err := quantize.Quantize(e.ctx, e.in, path, opts)
	if err != nil {
		return q, 0, false, err
	}
	if len(sum.Quantized) == 0 {
		removeModel(path)
		return q, 0, false, nil
	}
	if bytes, err = bench.ModelBytes(path); err != nil {
		return q, 0, false, err
	}
	acc := map[int]*agreement{}
	compare := func(i int, outs []bench.Tensor) error {
		for j, got := range outs {
			ref, err := bench.ReadNPY(filepath.Join(e.refDir, fmt.Sprintf("%d_%d.npy", i, j)), got.Name)
			if err != nil {
				return err
			}
			if !ref.IsFloat() {
				continue
			}
			a, err1 := ref.Float64s()
			b, err2 := got.Float64s()
			if err1 != nil || err2 != nil || len(a) != len(b) {
				return fmt.Errorf("output %s: %d values against FP32's %d (%v, %v)", got.Name, len(b), len(a), err1, err2)
			}
			if acc[j] == nil {
				acc[j] = &agreement{}
			}
			acc[j].add(a, b)
		}
		return nil
	}
	err = e.run(path, compare)
	if err != nil {
		removeModel(path)
		return q, 0, false, err
	}
	q = bench.Quality{Cosine: math.Inf(1)}
	for _, a := range acc {
		aq := a.quality()
		q.Cosine = math.Min(q.Cosine, aq.Cosine)
		q.MSE, q.MAE, q.MaxAbs = math.Max(q.MSE, aq.MSE), math.Max(q.MAE, aq.MAE), math.Max(q.MaxAbs, aq.MaxAbs)
	}
	return q, bytes, true, nil
}

// run runs a candidate on every sample, whole or (when FP32 had to) in
// pieces, and when in pieces records its time.
func (e *evaluator) run(path string, compare func(int, []bench.Tensor) error) error {
	if !e.pieces {
		return runSamples(e.ctx, path, e.set, e.o.Bench, compare)
	}
	plan, err := planPieces(path, e.budget, nil)
	if err != nil {
		return err
	}
	e.lastTime = 0
	runs := pieceTimingRuns
	if e.untimed {
		runs = 0
	}
	if plan.parts != nil {
		if plan.note != "" {
			e.notes = append(e.notes, plan.note)
		}
		e.lastTime, err = runPieces(e.ctx, plan, e.set, e.o.Bench, e.tmp, pieceRun{outputs: compare, timeRuns: runs})
		return err
	}
	if plan.note != "" {
		e.notes = append(e.notes, plan.note)
	}
	if err := runSamples(e.ctx, path, e.set, e.o.Bench, compare); err != nil {
		return err
	}
	if runs > 0 {
		e.lastTime, err = timeWhole(e.ctx, path, e.set, e.o.Bench)
	}
	return err
}

// timeWhole is the fastest of pieceTimingRuns runs of the whole model on
// the first sample, the measure pieces are timed by.
func timeWhole(ctx context.Context, path string, set *sampleSet, opts bench.Options) (time.Duration, error) {
	in, err := set.sample(0)
	if err != nil {
		return 0, err
	}
	sess, err := bench.Load(ctx, path, opts)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	if err := sess.SetInputs(in); err != nil {
		return 0, err
	}
	best := time.Duration(-1)
	for j := 0; j < timingWarmup+pieceTimingRuns; j++ {
		d, err := sess.RunOnce(ctx)
		if err != nil {
			return 0, err
		}
		if j >= timingWarmup && (best < 0 || d < best) {
			best = d
		}
	}
	return best, nil
}

// speedup times the model at path against FP32: paired in one process
// when both fit in a session, otherwise from the piece times that quality
// measured.
func (e *evaluator) speedup(path string, inputs []bench.Tensor) (float64, error) {
	if e.pieces {
		if e.lastTime <= 0 {
			return 0, fmt.Errorf("no time measured for %s", path)
		}
		return float64(e.fp32Time) / float64(e.lastTime), nil
	}
	_, pr, err := bench.Paired(e.ctx, bench.PairedConfig{Baseline: e.in, Models: []string{path}, Inputs: inputs, Warmup: 3, Runs: 20, Options: e.o.Bench})
	if err != nil {
		return 0, err
	}
	return pr[0].Speedup, nil
}

// maxSensitivityNodes bounds the per-node measurement: one onnxruntime
// evaluation per node.
const maxSensitivityNodes = 48

// floatKept is the search's answer when no int8 plan meets the target:
// measure each node's own damage (int8 per channel on that node alone),
// then keep in float the worst 1, 2, 4, ... nodes until the rest, in int8,
// meets the target. nil when an int8 plan already met it, or none does so.
func (e *evaluator) floatKept(res *SearchResult, first []bench.Tensor) (*Candidate, error) {
	for _, c := range res.Candidates {
		if c.Meets && (c.opts.Mode == quantize.ModeInt8 || c.opts.Mode == quantize.ModeInt8Static) {
			return nil, nil
		}
	}
	base := e.o.Options
	base.Mode, base.PerChannel, base.Activations, base.ExtraOutputs = quantize.ModeInt8, true, nil, nil
	plan, _, err := quantize.Plan(e.ctx, e.in, base)
	if err != nil {
		return nil, err
	}
	if len(plan) < 2 || len(plan) > maxSensitivityNodes {
		return nil, nil
	}
	type damage struct {
		node string
		loss float64
	}
	var ds []damage
	e.untimed = true
	defer func() { e.untimed = false }()
	for _, p := range plan {
		one := base
		one.Nodes = []string{p.Node}
		path := filepath.Join(e.tmp, "one.onnx")
		q, _, changed, err := e.quality(path, one)
		removeModel(path)
		if err != nil {
			return nil, fmt.Errorf("quantize: search: node %s alone: %w", p.Node, err)
		}
		if changed {
			ds = append(ds, damage{p.Node, 1 - q.Cosine + q.MSE})
		}
	}
	e.untimed = false
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].loss > ds[j].loss })
	for k := 1; k < len(ds); k *= 2 {
		c := Candidate{Name: fmt.Sprintf("int8-pc-float%d", k), opts: base}
		for _, d := range ds[:k] {
			c.opts.ExcludeNodes = append(c.opts.ExcludeNodes, d.node)
		}
		c.Plan = fmt.Sprintf("int8 dynamic per channel, the %d nodes that lose most alone kept in float (%s)", k, strings.Join(c.opts.ExcludeNodes, ", "))
		path := filepath.Join(e.tmp, c.Name+".onnx")
		q, bytes, changed, err := e.quality(path, c.opts)
		if err != nil {
			return nil, fmt.Errorf("quantize: search: candidate %s: %w", c.Name, err)
		}
		if !changed {
			return nil, nil
		}
		c.Bytes, c.Quality, c.Meets = bytes, q, e.t.met(q)
		if c.Meets {
			c.Speedup, err = e.speedup(path, first)
			removeModel(path)
			if err != nil {
				return nil, fmt.Errorf("quantize: search: candidate %s: %w", c.Name, err)
			}
			return &c, nil
		}
		removeModel(path)
	}
	return nil, nil
}

func removeModel(path string) {
	os.Remove(path)
	os.Remove(path + ".data")
}
