// Command synth writes a synthetic transformer-like FP32 ONNX model with
// external data, for scripts: go run ./quantize/synth/cmd/synth -o DIR -size 4GiB
package main

import (
	"flag"
	"fmt"
	"os"

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
	n, err := synth.ParseSize(*size)
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
