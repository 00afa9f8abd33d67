package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/auto"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/synth"

	"github.com/modelctl/modelctl/internal/humanize"
)

func init() {
	register(newQuantizeCmd)
	register(newSynthCmd)
}

type quantizeOptions struct {
	out        string
	mode       string
	weightType string
	costModel  string
	shapes     []string
	json       bool
	target     auto.Target
	opts       auto.Options
}

func newQuantizeCmd() *cobra.Command {
	o := &quantizeOptions{}
	cmd := &cobra.Command{
		Use:   "quantize IN.onnx -o OUT.onnx",
		Short: "Quantize an ONNX model (INT8, FP16 or INT4) in bounded memory",
		Long: `Quantize rewrites the weights of an ONNX model tensor by tensor, streaming
them from disk, so a model of any size quantizes in a few hundred MB of memory.
The output's external data file is named after it (OUT.onnx.data).

  int8  MatMul (constant B) and Gemm become DynamicQuantizeLinear → MatMulInteger
        (com.microsoft.DynamicQuantizeMatMul for opset < 11)
  fp16  float constants and computation in float16, inputs and outputs float32
  int4  MatMul and Gemm become com.microsoft.MatMulNBits (block-wise)

int8 weights are portable by default: full range wherever onnxruntime computes
them exactly on every x86-64 CPU, narrowed just enough where a CPU without VNNI
would saturate (pairs of products summed in 16 bits). --full-range keeps ±127
everywhere and records that the model needs VNNI (or ARM). The settings and the
CPU requirement are written into the model's metadata; push records them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.out == "" {
				return fmt.Errorf("quantize: -o OUT.onnx is required")
			}
			if err := modelfile.RequireONNX("quantize", args[0]); err != nil {
				return err
			}
			o.opts.Mode = quantize.Mode(o.mode)
			o.opts.CostModel = quantize.CostModel(o.costModel)
			if cmd.Flags().Changed("target-cosine") || cmd.Flags().Changed("max-mse") || cmd.Flags().Changed("max-mae") {
				if o.target.MinCosine == 0 {
					return fmt.Errorf("quantize: --max-mse and --max-mae go with --target-cosine")
				}
				o.opts.Target = &o.target
			}
			o.opts.Samples.Shapes = map[string][]int64{}
			for _, s := range o.shapes {
				name, dims, err := bench.ParseShapeFlag(s)
				if err != nil {
					return fmt.Errorf("quantize: %w", err)
				}
				o.opts.Samples.Shapes[name] = dims
			}
			switch o.weightType {
			case "int8":
			case "uint8":
				o.opts.Uint8 = true
			default:
				return fmt.Errorf("quantize: --weight-type %q: want int8 or uint8", o.weightType)
			}
			stderr := cmd.ErrOrStderr()
			var bar *progressBar
			if f, ok := stderr.(*os.File); ok && isTerminal(f) && !o.json {
				bar = &progressBar{w: f}
				o.opts.Progress = bar.update
			}
			res, err := auto.Quantize(cmd.Context(), args[0], o.out, o.opts)
			bar.finish()
			if err != nil {
				return err
			}
			sum := res.Summary
			peak := quantize.PeakRSS()
			if o.json {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					*quantize.Summary
					Calibrated   int                `json:"calibrated,omitempty"`
					Search       *auto.SearchResult `json:"search,omitempty"`
					Output       string             `json:"output"`
					PeakRSSBytes int64              `json:"peakRSSBytes"`
					Seconds      float64            `json:"seconds"`
				}{sum, res.Calibrated, res.Search, o.out, peak, sum.Duration.Seconds()})
			}
			printSearch(cmd.OutOrStdout(), res)
			printSummary(cmd.OutOrStdout(), o.out, sum, peak)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "output", "o", "", "output model path (its data file is OUT.onnx.data)")
	f.StringVar(&o.mode, "mode", "int8", "int8, int8-static (calibrated on --inputs or --shape), fp16 or int4")
	f.BoolVar(&o.opts.PerChannel, "per-channel", false, "int8: one scale per output column")
	f.BoolVar(&o.opts.ReduceRange, "reduce-range", false, "int8: 7-bit weights everywhere (the default narrows only where a CPU without VNNI needs it)")
	f.BoolVar(&o.opts.FullRange, "full-range", false, "int8: ±127 weights everywhere; the model then needs VNNI (or ARM) and says so")
	f.StringVar(&o.weightType, "weight-type", "int8", "int8 (symmetric) or uint8 (asymmetric) weights")
	f.IntVar(&o.opts.BlockSize, "block-size", 32, "int4: block size (16..256, a power of two)")
	f.BoolVar(&o.opts.Symmetric, "symmetric", false, "int4: symmetric blocks (no zero points)")
	f.BoolVar(&o.opts.FP16WeightsOnly, "fp16-weights-only", false, "fp16: store weights as float16 but compute in float32")
	f.StringSliceVar(&o.opts.OpTypes, "op-types", nil, "node types to quantize (default MatMul,Gemm)")
	f.StringSliceVar(&o.opts.ExcludeOpTypes, "exclude-op-types", nil, "node types to leave as they are")
	f.StringSliceVar(&o.opts.Nodes, "nodes", nil, "only these node names")
	f.StringSliceVar(&o.opts.ExcludeNodes, "exclude-nodes", nil, "node names to leave as they are")
	f.Int64Var(&o.opts.MinWeightElems, "min-weight-size", 0, "leave weights with fewer elements as they are")
	f.StringVar(&o.costModel, "cost-model", string(quantize.CostModelCPU), "cpu: keep in float the nodes where int8/int4 does not pay on a CPU; off: quantize every candidate")
	f.IntVar(&o.opts.AccuracyLevel, "accuracy-level", quantize.DefaultAccuracyLevel, "int4: MatMulNBits accuracy_level (1..4; 4 = int8 activations; -1 = none)")
	f.StringVar(&o.opts.Samples.Dir, "inputs", "", "int8-static and --target-cosine: a directory of .npy inputs (one subdirectory per sample, or one file per sample for a one-input model)")
	f.StringArrayVar(&o.shapes, "shape", nil, "int8-static and --target-cosine without --inputs: generated inputs of this shape (NAME=1x16x128, repeatable)")
	f.IntVar(&o.opts.Samples.Count, "samples", 8, "number of generated inputs without --inputs")
	f.StringVar(&o.opts.Calibration.Method, "calibration", auto.MinMax, "int8-static: activation ranges by minmax or percentile")
	f.Float64Var(&o.opts.Calibration.Percentile, "percentile", 99.99, "int8-static with --calibration percentile: share of values kept")
	f.StringVar(&o.opts.Form, "static-form", "", "int8-static graph form: qdq (default, measured faster) or qlinear")
	f.Float64Var(&o.target.MinCosine, "target-cosine", 0, "search the plan: the smallest/fastest model with at least this cosine against FP32")
	f.Float64Var(&o.target.MaxMSE, "max-mse", 0, "with --target-cosine: also at most this MSE")
	f.Float64Var(&o.target.MaxMAE, "max-mae", 0, "with --target-cosine: also at most this MAE")
	f.StringVar(&o.opts.Prefer, "prefer", auto.PreferSpeed, "with --target-cosine: speed or size")
	f.IntVar(&o.opts.Bench.Threads, "threads", 0, "onnxruntime threads for calibration and search (0: its default)")
	f.StringVar(&o.opts.Bench.LibraryPath, "ort-lib", "", "onnxruntime shared library (default: $"+bench.LibraryEnv+" or the cache of `make ort`)")
	f.BoolVar(&o.json, "json", false, "print the summary as JSON")
	return cmd
}

// printSearch prints the plan a search chose, and why.
func printSearch(w io.Writer, res *auto.Result) {
	if res.Calibrated > 0 {
		fmt.Fprintf(w, "calibrated %d activations\n", res.Calibrated)
	}
	if res.Memory != "" {
		fmt.Fprintf(w, "calibration: %s\n", res.Memory)
	}
	s := res.Search
	if s == nil {
		return
	}
	if s.Memory != "" {
		fmt.Fprintf(w, "search: %s\n", s.Memory)
	}
	fmt.Fprintf(w, "searched for %s (prefer %s):\n", s.Target, s.Prefer)
	for _, c := range s.Candidates {
		verdict := "misses the target"
		if c.Meets {
			verdict = fmt.Sprintf("meets it, %.2fx FP32", c.Speedup)
		}
		fmt.Fprintf(w, "  %-12s %5.1f%% of FP32, cosine %.6f, MSE %.3g, MAE %.3g: %s\n", c.Name,
			100*float64(c.Bytes)/float64(max(1, s.FP32Bytes)), c.Quality.Cosine, c.Quality.MSE, c.Quality.MAE, verdict)
	}
	fmt.Fprintf(w, "chose %s: %s\n", s.Chosen, s.Why)
}

func printSummary(w io.Writer, out string, s *quantize.Summary, peak int64) {
	fmt.Fprintf(w, "wrote %s (%s)\n", out, s.Mode)
	fmt.Fprintf(w, "  tensors quantized: %d, nodes skipped: %d\n", len(s.Quantized), len(s.Skipped))
	// Group the skipped nodes by reason, with a few names each.
	var reasons []string
	byReason := map[string][]string{}
	for _, sk := range s.Skipped {
		if byReason[sk.Reason] == nil {
			reasons = append(reasons, sk.Reason)
		}
		byReason[sk.Reason] = append(byReason[sk.Reason], sk.OpType+" "+sk.Node)
	}
	for _, r := range reasons {
		nodes := byReason[r]
		more := ""
		if len(nodes) > 3 {
			nodes, more = nodes[:3], fmt.Sprintf(", ... %d more", len(byReason[r])-3)
		}
		fmt.Fprintf(w, "    %d × %s (%s%s)\n", len(byReason[r]), r, strings.Join(nodes, ", "), more)
	}
	switch {
	case s.WeightRange == "" || len(s.Quantized) == 0:
	case s.RequiresCPU != "":
		fmt.Fprintf(w, "  weight range: %s; %d of %d weights overflow 16-bit pairs: the model needs a CPU with VNNI or ARM (%s)\n",
			s.WeightRange, len(s.NeedsVNNI), len(s.Quantized), s.RequiresCPU)
	case s.WeightRange == quantize.RangePortable:
		fmt.Fprintf(w, "  weight range: portable (%d of %d weights narrowed so CPUs without VNNI compute them exactly)\n",
			len(s.Narrowed), len(s.Quantized))
	default:
		fmt.Fprintf(w, "  weight range: %s (exact on every CPU)\n", s.WeightRange)
	}
	fmt.Fprintf(w, "  quantized weights: %s -> %s\n", humanize.Bytes(s.InputDataBytes), humanize.Bytes(s.OutputDataBytes))
	fmt.Fprintf(w, "  model size: %s -> %s (%.1f%%)\n", humanize.Bytes(s.InputBytes), humanize.Bytes(s.OutputBytes), 100*float64(s.OutputBytes)/float64(max(1, s.InputBytes)))
	fmt.Fprintf(w, "  time: %s, peak RSS: %s\n", s.Duration.Round(time.Millisecond), humanize.Bytes(peak))
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar draws on a terminal, at most ten times a second.
type progressBar struct {
	w    io.Writer
	last time.Time
	used bool
}

func (b *progressBar) update(done, total int64) {
	if time.Since(b.last) < 100*time.Millisecond && done < total {
		return
	}
	b.last, b.used = time.Now(), true
	frac := float64(done) / float64(max(total, 1))
	n := int(frac * 30)
	fmt.Fprintf(b.w, "\r[%s%s] %5.1f%% %s/%s", strings.Repeat("#", n), strings.Repeat(".", 30-n), 100*frac, humanize.Bytes(done), humanize.Bytes(total))
}

func (b *progressBar) finish() {
	if b != nil && b.used {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// synth makes test models for trying modelctl, scripts and benchmarks (the
// one way to make them from the command line).
func newSynthCmd() *cobra.Command {
	var cfg synth.Config
	var dir, size string
	cmd := &cobra.Command{
		Use:   "synth -o DIR [--size 4GiB]",
		Short: "Write a synthetic transformer-like FP32 model with external data (to try modelctl, or for benchmarks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("synth: -o DIR is required")
			}
			n, err := synth.ParseSize(size)
			if err != nil {
				return fmt.Errorf("synth: %w", err)
			}
			cfg.WeightBytes = n
			path, err := synth.GenerateContext(cmd.Context(), dir, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&dir, "output", "o", "", "output directory")
	f.StringVar(&size, "size", "16MiB", "approximate weight bytes (512KiB, 64MiB, 4GiB)")
	f.IntVar(&cfg.Layers, "layers", 0, "transformer blocks (default: from --size)")
	f.IntVar(&cfg.Hidden, "hidden", 0, "width, a multiple of 8 (default 256, or from --size and --layers)")
	f.IntVar(&cfg.FFN, "ffn", 4, "feed-forward multiplier")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the weights")
	f.StringVar(&cfg.Name, "name", "model.onnx", "model file name")
	return cmd
}
