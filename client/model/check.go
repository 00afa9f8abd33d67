package model

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/quantize/bench"
)

// Check returns the check sync --check runs on a staged artifact: every
// ONNX model that carries a reference (MODEL.onnx.check.json) runs through
// onnxruntime here (ortLib, or the default library) and the reference's
// gates apply. It logs one line per model checked.
func Check(log io.Writer, ortLib string) pin.CheckFunc {
	return func(ctx context.Context, dir string, art *client.Artifact) error {
		checked := 0
		for _, f := range art.Manifest.Files {
			if !strings.HasSuffix(f.Path, CheckSuffix) {
				continue
			}
			model := strings.TrimSuffix(f.Path, CheckSuffix)
			b, err := ReadLimited(filepath.Join(dir, filepath.FromSlash(f.Path)), MaxBenchReport)
			if err != nil {
				return err
			}
			ref, err := bench.ParseReference(b)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			start := time.Now()
			res, err := bench.Check(ctx, filepath.Join(dir, filepath.FromSlash(model)), ref, bench.Options{LibraryPath: ortLib})
			if err != nil {
				return err
			}
			names := make([]string, 0, len(res.Quality))
			for name := range res.Quality {
				names = append(names, name)
			}
			sort.Strings(names)
			var parts []string
			for _, name := range names {
				q := res.Quality[name]
				parts = append(parts, fmt.Sprintf("%s cosine %.6f mse %.3g mae %.3g", name, q.Cosine, q.MSE, q.MAE))
			}
			if !res.Gates.Passed {
				return fmt.Errorf("%s on this CPU (%s): %s", model, strings.Join(res.CPU, ","), strings.Join(res.Gates.Failures, "; "))
			}
			fmt.Fprintf(log, "check: %s on this CPU: %s; gates (cosine >= %g, mse <= %g, mae <= %g) passed in %s\n",
				model, strings.Join(parts, ", "), ref.Gates.MinCosine, ref.Gates.MaxMSE, ref.Gates.MaxMAE, time.Since(start).Round(time.Millisecond))
			checked++
		}
		if checked == 0 {
			return fmt.Errorf("%s carries no reference to check against (push it with --bench REPORT from bench --baseline)", art.Digest)
		}
		return nil
	}
}
