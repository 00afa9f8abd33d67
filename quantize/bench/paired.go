package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// PairedConfig is a speed and quality comparison of several versions of a
// model against a baseline, all loaded in this process and run in turn on
// the same inputs, so that every version sees the same machine conditions
// (a shared, busy machine makes separate measurements incomparable).
type PairedConfig struct {
	Baseline string
	Models   []string
	// Inputs are fed to the baseline, and by name (float types converted)
	// to each model.
	Inputs []Tensor
	Warmup int
	Runs   int // rounds; each round runs every model once, in a rotating order
	Options
}

// PairedResult is one model's figures against the baseline.
type PairedResult struct {
	Path    string
	P50     time.Duration
	Speedup float64 // baseline p50 over this p50 (>1: faster)
	// SpeedupMin is the same for the fastest run of each: on a shared,
	// loaded machine it is the steadier estimate of what each costs alone.
	SpeedupMin float64
	Worst      Quality // worst figure over the outputs, against the baseline
}

// Paired loads the baseline and every model, runs them round-robin and
// returns the baseline's p50 and each model's figures, in cfg.Models order.
func Paired(ctx context.Context, cfg PairedConfig) (time.Duration, []PairedResult, error) {
	if cfg.Runs < 1 {
		return 0, nil, fmt.Errorf("paired benchmark: %d runs: need at least 1", cfg.Runs)
	}
	paths := append([]string{cfg.Baseline}, cfg.Models...)
	sessions := make([]*Session, 0, len(paths))
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	for i, p := range paths {
		s, err := Load(ctx, p, cfg.Options)
		if err != nil {
			return 0, nil, fmt.Errorf("paired benchmark: load %s: %w", p, err)
		}
		sessions = append(sessions, s)
		in := cfg.Inputs
		if i > 0 {
			if in, err = baselineInputs(s.Info(), cfg.Inputs); err != nil {
				return 0, nil, fmt.Errorf("paired benchmark: %s: %w", p, err)
			}
		}
		if err := s.SetInputs(in); err != nil {
			return 0, nil, fmt.Errorf("paired benchmark: %w", err)
		}
		// The first run allocates the outputs; it is not timed.
		if _, err := s.RunOnce(ctx); err != nil {
			return 0, nil, fmt.Errorf("paired benchmark: %w", err)
		}
	}
	times := make([][]time.Duration, len(sessions))
	for round := 0; round < cfg.Warmup+cfg.Runs; round++ {
		for j := range sessions {
			i := (j + round) % len(sessions)
			d, err := sessions[i].RunOnce(ctx)
			if err != nil {
				return 0, nil, fmt.Errorf("paired benchmark: %w", err)
			}
			if round >= cfg.Warmup {
				times[i] = append(times[i], d)
			}
		}
	}
	ref, err := sessions[0].Outputs()
	if err != nil {
		return 0, nil, fmt.Errorf("paired benchmark: outputs of %s: %w", cfg.Baseline, err)
	}
	base, baseMin := median(times[0]), slices.Min(times[0])
	results := make([]PairedResult, 0, len(cfg.Models))
	for i, s := range sessions[1:] {
		got, err := s.Outputs()
		if err != nil {
			return 0, nil, fmt.Errorf("paired benchmark: outputs of %s: %w", paths[i+1], err)
		}
		q, err := compareOutputs(ref, got)
		if err != nil {
			return 0, nil, fmt.Errorf("paired benchmark: %s: %w", paths[i+1], err)
		}
		w := worst(q)
		if w == nil {
			return 0, nil, errors.New("paired benchmark: the model has no floating-point output to compare")
		}
		p50 := median(times[i+1])
		results = append(results, PairedResult{Path: paths[i+1], P50: p50, Speedup: float64(base) / float64(p50),
			SpeedupMin: float64(baseMin) / float64(slices.Min(times[i+1])), Worst: *w})
	}
	return base, results, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
