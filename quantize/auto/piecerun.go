package auto

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/modelctl/modelctl/quantize/bench"
)

// pieceRun says what a run of a model in pieces hands back.
type pieceRun struct {
	// extra values (calibration's activations) go to value as each piece
	// computes them, passes times over the samples (2 for a histogram).
	extra  []string
	passes int
	value  func(pass, sample int, t bench.Tensor) error
	// outputs gets each sample's graph outputs, in declared order, once
	// every piece has run.
	outputs func(sample int, outs []bench.Tensor) error
	// timeRuns > 0 times each piece on the first sample while it is
	// loaded: the sum of each piece's fastest run is the model's time.
	timeRuns int
}

// timingWarmup are the untimed runs before a piece (or a whole model) is
// timed.
const timingWarmup = 2

// runPieces runs the model of plan on every sample one piece at a time:
// piece k is loaded, run on every sample (its inputs read from the samples
// or from the files the pieces before it wrote), its results written to
// files under dir, and closed before piece k+1 is loaded, so only one
// piece's weights are resident at once. It returns the summed piece times
// when r.timeRuns > 0.
func runPieces(ctx context.Context, plan *piecePlan, set *sampleSet, opts bench.Options, dir string, r pieceRun) (time.Duration, error) {
	store, err := os.MkdirTemp(dir, "live-")
	if err != nil {
		return 0, fmt.Errorf("run in pieces: %w", err)
	}
	defer os.RemoveAll(store)
	ids := map[string]int{}
	file := func(sample int, name string) string {
		id, ok := ids[name]
		if !ok {
			id = len(ids)
			ids[name] = id
		}
		return filepath.Join(store, fmt.Sprintf("%d_%d.npy", sample, id))
	}
	extra := map[string]bool{}
	for _, v := range r.extra {
		extra[v] = true
	}
	graphIn := map[string]bool{}
	for _, in := range set.info.Inputs {
		graphIn[in.Name] = true
	}
	passes := max(1, r.passes)
	var total time.Duration
	for k, pc := range plan.parts {
		label := fmt.Sprintf("%s (piece %d of %d)", plan.m.Path, k+1, len(plan.parts))
		model, err := plan.build(k)
		if err != nil {
			return 0, err
		}
		// What Go freed (the quantizer's chunks, the last piece's
		// tensors) goes back to the system before onnxruntime reads the
		// next piece: the peak is one piece plus what is live, not plus
		// what the collector has not returned yet.
		debug.FreeOSMemory()
		sess, err := bench.LoadBytes(ctx, label, model, plan.m.Dir, opts)
		if err != nil {
			return 0, err
		}
		stored := map[string]bool{}
		for _, o := range pc.outputs {
			if plan.isOutput(o) || plan.readLater(o, k) {
				stored[plan.crossName(o)] = true
			}
		}
		hasExtra := false
		for _, o := range pc.outputs {
			hasExtra = hasExtra || extra[o]
		}
		if k == 0 {
			for v := range extra {
				hasExtra = hasExtra || graphIn[v]
			}
		}
		inputs := func(i int) ([]bench.Tensor, error) {
			var sample []bench.Tensor
			out := make([]bench.Tensor, 0, len(sess.Info().Inputs))
			for _, in := range sess.Info().Inputs {
				if graphIn[in.Name] {
					if sample == nil {
						if sample, err = set.sample(i); err != nil {
							return nil, err
						}
					}
					for _, t := range sample {
						if t.Name == in.Name {
							out = append(out, t)
						}
					}
					continue
				}
				t, err := bench.ReadNPY(file(i, in.Name), in.Name)
				if err != nil {
					return nil, fmt.Errorf("%s: input %s: %w", label, in.Name, err)
				}
				out = append(out, t)
			}
			return out, nil
		}
		run := func() error {
			for pass := 0; pass < passes; pass++ {
				if pass > 0 && !hasExtra {
					break
				}
				for i := 0; i < set.n; i++ {
					if k == 0 && hasExtra && r.value != nil {
						// Extra values that are graph inputs come from the
						// samples themselves.
						sample, err := set.sample(i)
						if err != nil {
							return err
						}
						for _, t := range sample {
							if extra[t.Name] {
								if err := r.value(pass, i, t); err != nil {
									return err
								}
							}
						}
					}
					in, err := inputs(i)
					if err != nil {
						return err
					}
					outs, err := sess.Infer(ctx, in)
					if err != nil {
						return err
					}
					for _, t := range outs {
						if pass == 0 && stored[t.Name] {
							if err := bench.WriteNPY(file(i, t.Name), t); err != nil {
								return err
							}
						}
						if extra[t.Name] && r.value != nil {
							if err := r.value(pass, i, t); err != nil {
								return err
							}
						}
					}
				}
			}
			if r.timeRuns <= 0 {
				return nil
			}
			in, err := inputs(0)
			if err != nil {
				return err
			}
			if err := sess.SetInputs(in); err != nil {
				return err
			}
			best := time.Duration(-1)
			for j := 0; j < timingWarmup+r.timeRuns; j++ {
				d, err := sess.RunOnce(ctx)
				if err != nil {
					return err
				}
				if j >= timingWarmup && (best < 0 || d < best) {
					best = d
				}
			}
			total += best
			return nil
		}
		err = run()
		// Closed before the next piece loads: its weights leave the
		// process (bench.Session.Close trims the heap).
		sess.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", label, err)
		}
	}
	if r.outputs == nil {
		return total, nil
	}
	for i := 0; i < set.n; i++ {
		outs := make([]bench.Tensor, 0, len(plan.m.Graph().GetOutput()))
		for _, o := range plan.m.Graph().GetOutput() {
			t, err := bench.ReadNPY(file(i, o.GetName()), o.GetName())
			if err != nil {
				return 0, fmt.Errorf("run in pieces: output %s: %w", o.GetName(), err)
			}
			outs = append(outs, t)
		}
		if err := r.outputs(i, outs); err != nil {
			return 0, fmt.Errorf("sample %d: %w", i, err)
		}
	}
	return total, nil
}
