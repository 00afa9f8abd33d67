// Command synth writes a synthetic transformer-like FP32 ONNX model with
// external data, for scripts: go run ./quantize/synth/cmd/synth -o DIR -size 4GiB
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/modelctl/modelctl/quantize/synth"
)

func main() {
	var cfg synth.Config
	dir := flag.String("o", "", "output directory (required)")
	size := flag.String("size", "16MiB", "approximate weight bytes: 512KiB, 64MiB, 4GiB, or a number")
	flag.IntVar(&cfg.Layers, "layers", 0, "transformer blocks (default: from -size)")
	flag.IntVar(&cfg.Hidden, "hidden", 0, "model width, a multiple of 8 (default 256, or from -size and -layers)")
	flag.IntVar(&cfg.FFN, "ffn", 4, "feed-forward width multiplier")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the weights")
	flag.StringVar(&cfg.Name, "name", "model.onnx", "model file name")
	flag.Parse()
	n, err := ParseSize(*size)
	if err == nil && *dir == "" {
		err = fmt.Errorf("-o DIR is required")
	}
	if err == nil {
		cfg.WeightBytes = n
		var path string
		if path, err = synth.Generate(*dir, cfg); err == nil {
			fmt.Println(path)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "synth:", err)
	os.Exit(1)
}

// ParseSize parses 123, 64KiB, 16MiB, 4GiB (also KB/MB/GB as powers of 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB/MiB/GiB suffix", s)
	}
	return int64(v * float64(mult)), nil
}
