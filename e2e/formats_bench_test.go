package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// BenchmarkPushPullFormats pushes and pulls a GGUF and an ONNX model of
// the same size (MODELCTL_BENCH_FORMAT_SIZE bytes, default 2 GiB) against
// `modelctl serve`, interleaved, each run with a fresh cache and registry,
// timed until the files are durable (the client fsyncs what it installs;
// the registry what it stores), and reports the medians and their ratio:
// the transfer does not depend on the format.
//
//	make bench-formats
func BenchmarkPushPullFormats(b *testing.B) {
	size := int64(2 << 30)
	if s := os.Getenv("MODELCTL_BENCH_FORMAT_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	src := b.TempDir()
	onnxPath, err := synth.Generate(filepath.Join(src, "onnx"), synth.Config{WeightBytes: size})
	if err != nil {
		b.Fatal(err)
	}
	ggufPath := filepath.Join(src, "model.gguf")
	if err := modelfiletest.WriteGGUF(ggufPath, modelfiletest.LargeGGUF(size)); err != nil {
		b.Fatal(err)
	}
	times := map[string][]float64{}
	for i := 0; i < max(b.N, 3); i++ {
		for _, m := range []struct{ name, path string }{{"onnx", onnxPath}, {"gguf", ggufPath}} {
			srv := testenv.StartOurs(b)
			c := newCLI(b)
			ref := srv.Addr + "/bench/" + m.name + ":v1"
			t0 := time.Now()
			c.run("push", m.path, ref)
			times[m.name+" push"] = append(times[m.name+" push"], time.Since(t0).Seconds())
			puller := newCLI(b)
			out := filepath.Join(b.TempDir(), "out")
			t0 = time.Now()
			puller.run("pull", ref, "-o", out)
			times[m.name+" pull"] = append(times[m.name+" pull"], time.Since(t0).Seconds())
			srv.Proc.Stop()
			os.RemoveAll(out)
			os.RemoveAll(srv.Root)
		}
	}
	med := func(k string) float64 {
		v := append([]float64(nil), times[k]...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	for _, op := range []string{"push", "pull"} {
		o, g := med("onnx "+op), med("gguf "+op)
		b.Logf("%s of %d bytes: onnx %.2f s, gguf %.2f s (runs %v / %v), gguf/onnx %.2f", op, size, o, g, times["onnx "+op], times["gguf "+op], g/o)
		b.ReportMetric(g/o, "gguf/onnx-"+op)
	}
}
