// Command quantable quantizes one model in several ways and measures every
// version against the FP32 model in one process, round-robin, at one or more
// input sizes: data size, cosine/MSE/MAE and speedup. It prints one
// Markdown table row per version (scripts/bench-quantize-table.sh runs it
// over the test models).
//
//	go run ./quantize/bench/cmd/quantable -model m.onnx -name synthetic \
//	    -shapes 'input=1x16x256;input=1x128x256' -variants int8,int8-pc,int4,fp16
//
// A variant is a name, optionally with settings: int8, int8-pc, int8-all
// (every node, no cost model), int8-static (QDQ, min-max),
// int8-static-qlinear, int8-static-pct (percentile), int4, int4-acc0 (no
// accuracy_level), fp16, auto@0.99 (search for cosine 0.99),
// auto@0.99-size, or NAME:SETTING+SETTING with settings min=ELEMS, pc, all, acc=N,
// static, qlinear.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/auto"
	"github.com/modelctl/modelctl/quantize/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quantable:", err)
		os.Exit(1)
	}
}

func run() error {
	model := flag.String("model", "", "FP32 model")
	name := flag.String("name", "", "model name in the table")
	shapes := flag.String("shapes", "", "input sizes, ';'-separated; each a ','-separated list of NAME=DIMS (empty: declared shapes)")
	variants := flag.String("variants", "int8,int8-pc,int4,fp16", "versions to measure")
	work := flag.String("work", "", "directory for the quantized models (default: a temporary one)")
	runs := flag.Int("runs", 30, "timed rounds per input size")
	warmup := flag.Int("warmup", 5, "untimed rounds per input size")
	threads := flag.Int("threads", 0, "onnxruntime intra-op threads (0: its default)")
	seed := flag.Int64("seed", 42, "input seed")
	flag.Parse()
	if *model == "" {
		return fmt.Errorf("-model is required")
	}
	if *name == "" {
		*name = filepath.Base(*model)
	}
	ctx := context.Background()
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("", "quantable-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var sizes []map[string][]int64
	for _, s := range strings.Split(*shapes, ";") {
		m := map[string][]int64{}
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n, dims, err := bench.ParseShapeFlag(f)
			if err != nil {
				return err
			}
			m[n] = dims
		}
		sizes = append(sizes, m)
	}
	fp32Size, err := bench.ModelBytes(*model)
	if err != nil {
		return err
	}
	type version struct {
		name, path string
		size       int64
	}
	var versions []version
	for _, v := range strings.Split(*variants, ",") {
		opts, err := parseVariant(v)
		if err != nil {
			return err
		}
		// Calibration and search run on generated inputs of the first
		// size, other seeds than the measurement's.
		opts.Samples = auto.Samples{Shapes: sizes[0], Count: 8, Seed: *seed + 1000}
		opts.Bench = bench.Options{Threads: *threads}
		out := filepath.Join(dir, strings.NewReplacer(":", "_", "=", "", ",", "_", "@", "").Replace(v)+".onnx")
		res, err := auto.Quantize(ctx, *model, out, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		if res.Search != nil {
			fmt.Fprintf(os.Stderr, "%s %s: chose %s: %s\n", *name, v, res.Search.Chosen, res.Search.Why)
		}
		sz, err := bench.ModelBytes(out)
		if err != nil {
			return err
		}
		versions = append(versions, version{v, out, sz})
	}
	paths := make([]string, len(versions))
	for i, v := range versions {
		paths[i] = v.path
	}
	speed := make([][]bench.PairedResult, len(sizes))
	for i, sz := range sizes {
		inputs, err := bench.GenerateInputs(*model, sz, *seed)
		if err != nil {
			return err
		}
		_, res, err := bench.Paired(ctx, bench.PairedConfig{Baseline: *model, Models: paths, Inputs: inputs,
			Warmup: *warmup, Runs: *runs, Options: bench.Options{Threads: *threads}})
		if err != nil {
			return err
		}
		speed[i] = res
	}
	fmt.Printf("| %s | fp32 | %s | 1 | 0 | 0 |", *name, mib(fp32Size))
	for range sizes {
		fmt.Print(" 1.00× (1.00×) |")
	}
	fmt.Println()
	for i, v := range versions {
		q := speed[0][i].Worst
		fmt.Printf("| %s | %s | %s (%.1f%%) | %.6f | %.2e | %.2e |", *name, v.name, mib(v.size), 100*float64(v.size)/float64(fp32Size), q.Cosine, q.MSE, q.MAE)
		for j := range sizes {
			fmt.Printf(" %.2f× (%.2f×) |", speed[j][i].Speedup, speed[j][i].SpeedupMin)
		}
		fmt.Println()
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// parseVariant turns a variant name into options.
func parseVariant(v string) (auto.Options, error) {
	name, settings, _ := strings.Cut(v, ":")
	var o auto.Options
	switch name {
	case "int8-static":
		o.Mode, o.Form = quantize.ModeInt8Static, quantize.FormQDQ
	case "int8-static-qlinear":
		o.Mode, o.Form = quantize.ModeInt8Static, quantize.FormQLinear
	case "int8-static-pct":
		o.Mode, o.Form = quantize.ModeInt8Static, quantize.FormQDQ
		o.Calibration.Method = auto.Percentile
	case "auto@0.99":
		o.Target = &auto.Target{MinCosine: 0.99}
	case "auto@0.99-size":
		o.Target, o.Prefer = &auto.Target{MinCosine: 0.99}, auto.PreferSize
	case "int8":
	case "int8-pc":
		o.PerChannel = true
	case "int8-all":
		o.CostModel = quantize.CostModelOff
	case "int4":
		o.Mode = quantize.ModeInt4
	case "int4-acc0":
		o.Mode, o.AccuracyLevel = quantize.ModeInt4, -1
	case "fp16":
		o.Mode = quantize.ModeFP16
	default:
		if settings == "" {
			return o, fmt.Errorf("variant %q: unknown", v)
		}
	}
	for _, s := range strings.Split(settings, "+") {
		k, val, _ := strings.Cut(s, "=")
		switch k {
		case "":
		case "pc":
			o.PerChannel = true
		case "static":
			o.Mode = quantize.ModeInt8Static
		case "qlinear":
			o.Mode, o.Form = quantize.ModeInt8Static, quantize.FormQLinear
		case "all":
			o.CostModel = quantize.CostModelOff
		case "int4":
			o.Mode = quantize.ModeInt4
		case "min", "acc":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return o, fmt.Errorf("variant %q: %s=%q: %w", v, k, val, err)
			}
			if k == "min" {
				o.MinWeightElems, o.CostModel = n, quantize.CostModelOff
			} else {
				o.AccuracyLevel = int(n)
			}
		default:
			return o, fmt.Errorf("variant %q: unknown setting %q", v, k)
		}
	}
	return o, nil
}
