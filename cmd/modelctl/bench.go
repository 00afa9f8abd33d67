package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/internal/version"
	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/quantize/bench"
)

func init() {
	register(newBenchCmd)
	register(newBenchWorkerCmd)
}

// exitGateFailed is the exit status of a benchmark whose quality gates
// failed, distinct from 1 (the benchmark could not run).
const exitGateFailed = 2

type benchOptions struct {
	baseline  string
	shapes    []string
	inputs    []string
	warmup    int
	runs      int
	threads   int
	provider  string
	ortLib    string
	seed      int64
	json      bool
	minCosine float64
	maxMSE    float64
	maxMAE    float64
}

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench MODEL.onnx",
		Short: "Measure a model with onnxruntime and gate its quality against a baseline",
		Long: `Measure a model with onnxruntime: session load time, first inference, warmup,
timed runs (p50, p95, mean, std), peak RSS of loading and of running (each model
in a process of its own), and file sizes (graph and external data).

With --baseline (usually the FP32 parent), both models run interleaved in the
same conditions; the report adds the speedup and, per output, cosine similarity,
MSE, MAE, max abs error and top-1 agreement, and the quality gates apply:
a violation exits with status 2 and a table of the failing outputs.

Inputs are generated from the model's declared inputs (seeded); bind dynamic
dimensions with --shape NAME=1x16x128, or give inputs as --input NAME=FILE.npy.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBench(cmd, o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.baseline, "baseline", "", "reference model (e.g. the FP32 parent) to compare outputs and speed with")
	f.StringArrayVar(&o.shapes, "shape", nil, "input shape NAME=1x16x128 binding dynamic dimensions (repeatable)")
	f.StringArrayVar(&o.inputs, "input", nil, "input from a .npy file, NAME=FILE.npy (repeatable)")
	f.IntVar(&o.warmup, "warmup", 3, "untimed runs after the first inference")
	f.IntVar(&o.runs, "runs", 20, "timed runs")
	f.IntVar(&o.threads, "threads", 0, "onnxruntime intra-op threads (0: its default, one per core)")
	f.StringVar(&o.provider, "provider", "auto", "execution provider: auto, cpu, cuda, directml or coreml")
	f.StringVar(&o.ortLib, "ort-lib", "", "onnxruntime shared library (default: $"+bench.LibraryEnv+", then the `make ort` cache)")
	f.Int64Var(&o.seed, "seed", 1, "seed of the generated inputs")
	f.BoolVar(&o.json, "json", false, "print the report as JSON (the input of push --bench)")
	f.Float64Var(&o.minCosine, "min-cosine", bench.DefaultGates.MinCosine, "gate: lowest cosine similarity of any output to the baseline's")
	f.Float64Var(&o.maxMSE, "max-mse", bench.DefaultGates.MaxMSE, "gate: highest mean squared error of any output")
	f.Float64Var(&o.maxMAE, "max-mae", bench.DefaultGates.MaxMAE, "gate: highest mean absolute error of any output")
	return cmd
}

func runBench(cmd *cobra.Command, o *benchOptions, model string) error {
	if err := modelfile.RequireONNX("bench", model); err != nil {
		return err
	}
	cfg := bench.Config{
		Model: model, Baseline: o.baseline, Seed: o.seed, Warmup: o.warmup, Runs: o.runs,
		Options: bench.Options{LibraryPath: o.ortLib, Threads: o.threads, Provider: o.provider, Warn: cmd.ErrOrStderr()},
		Gates:   bench.Gates{MinCosine: o.minCosine, MaxMSE: o.maxMSE, MaxMAE: o.maxMAE},
		Shapes:  map[string][]int64{}, InputFiles: map[string]string{}, Version: version.Version,
	}
	if o.threads < 0 {
		return fmt.Errorf("bench: --threads %d: must not be negative", o.threads)
	}
	for _, s := range o.shapes {
		name, shape, err := bench.ParseShapeFlag(s)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		cfg.Shapes[name] = shape
	}
	for _, s := range o.inputs {
		name, path, ok := strings.Cut(s, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("bench: --input %q: want NAME=FILE.npy", s)
		}
		cfg.InputFiles[name] = path
	}
	// Progress only on a terminal: scripts read stdout and stderr cleanly.
	if f, ok := cmd.ErrOrStderr().(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			cfg.Progress = f
		}
	}
	report, err := bench.Bench(cmd.Context(), cfg)
	if err != nil {
		return fmt.Errorf("bench %s: %w", model, err)
	}
	out := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("bench: write report: %w", err)
		}
	} else if err := report.WriteTable(out); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	if o.json && report.SizeNotSpeed != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "bench: note: %s\n", report.SizeNotSpeed)
	}
	if report.ReferenceNote != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "bench: note: %s\n", report.ReferenceNote)
	}
	if !report.Gates.Passed {
		if report.Hint != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: %s\n", report.Hint)
		}
		return &exitError{code: exitGateFailed, err: fmt.Errorf("bench %s: quality gate failed against %s: %s",
			model, o.baseline, strings.Join(report.Gates.Failures, "; "))}
	}
	return nil
}

// newBenchWorkerCmd is the hidden process bench starts for each model, so
// that memory and load time are measured for one model alone.
func newBenchWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    bench.WorkerCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.ServeWorker(cmd.Context(), os.Stdin, os.Stdout, os.Stderr)
		},
	}
}
