package auto

import (
	"context"
	"fmt"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
)

// Options are what `modelctl quantize` asks for: the quantize options, and
// for int8-static and a search, where inputs come from and how to run them.
type Options struct {
	quantize.Options
	Samples     Samples
	Calibration CalibrationOptions
	// Target, when set, makes Quantize search the plan (see Search).
	Target *Target
	// Prefer is what the search optimizes among the plans that meet the
	// target: PreferSpeed (default) or PreferSize.
	Prefer string
	Bench  bench.Options
	// PieceBudget is the weight one piece of a model may hold when
	// calibration and the search run it: a model with more runs in pieces
	// (see docs/quantize.md). 0: DefaultPieceBudget; negative: always whole.
	PieceBudget int64
}

// Result is what Quantize did.
type Result struct {
	*quantize.Summary
	// Calibrated is the number of activations int8-static calibrated.
	Calibrated int `json:"calibrated,omitempty"`
	// Search is the search's account, when there was one.
	Search *SearchResult `json:"search,omitempty"`
	// Memory says how calibration ran the model when it was too large
	// for one piece: in pieces, or whole and why.
	Memory string `json:"memory,omitempty"`
}

// Quantize writes out from in: as quantize.Quantize does, after calibrating
// activations for int8-static, or the plan a search chose for a target.
func Quantize(ctx context.Context, in, out string, o Options) (*Result, error) {
	o.Calibration.Options = o.Bench
	if o.Calibration.PieceBudget == 0 {
		o.Calibration.PieceBudget = o.PieceBudget
	}
	if o.Target != nil || o.Mode == quantize.ModeInt8Static {
		// Both run onnxruntime: say it is missing before any work.
		lib, err := bench.LibraryPath(o.Bench.LibraryPath)
		if err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
		o.Bench.LibraryPath, o.Calibration.LibraryPath = lib, lib
	}
	if o.Target != nil {
		return Search(ctx, in, out, o)
	}
	if o.Mode != quantize.ModeInt8Static {
		sum, err := quantize.Quantize(ctx, in, out, o.Options)
		if err != nil {
			return nil, err
		}
		return &Result{Summary: sum}, nil
	}
	qo, n, note, err := calibrated(ctx, in, o)
	if err != nil {
		return nil, err
	}
	sum, err := quantize.Quantize(ctx, in, out, qo)
	if err != nil {
		return nil, err
	}
	return &Result{Summary: sum, Calibrated: n, Memory: note}, nil
}

// calibrated returns o's quantize options with the activation ranges of
// the nodes int8-static quantizes, measured on o's samples.
func calibrated(ctx context.Context, in string, o Options) (quantize.Options, int, string, error) {
	qo := o.Options
	qo.Mode = quantize.ModeInt8Static
	plan, _, err := quantize.Plan(ctx, in, qo)
	if err != nil {
		return qo, 0, "", err
	}
	seen := map[string]bool{}
	var values []string
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			values = append(values, v)
		}
	}
	for _, p := range plan {
		add(p.Activation)
		if qo.Form == quantize.FormQLinear {
			add(p.Output)
		}
	}
	if len(values) == 0 {
		return qo, 0, "", nil
	}
	ranges, note, err := calibrate(ctx, in, values, o.Samples, o.Calibration)
	if err != nil {
		return qo, 0, note, fmt.Errorf("quantize %s: %w", in, err)
	}
	qo.Activations = ranges
	qo.Calibration = o.Calibration.Method
	if qo.Calibration == "" {
		qo.Calibration = MinMax
	}
	if qo.Calibration == Percentile {
		p := o.Calibration.Percentile
		if p == 0 {
			p = 99.99
		}
		qo.Calibration = fmt.Sprintf("percentile %g", p)
	}
	return qo, len(values), note, nil
}
