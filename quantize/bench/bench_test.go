//go:build cgo

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The test binary doubles as the worker process Bench starts.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_TEST_WORKER") == "1" {
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testConfig(t *testing.T, model, baseline string) Config {
	t.Setenv("BENCH_TEST_WORKER", "1")
	return Config{
		Model: model, Baseline: baseline, Shapes: map[string][]int64{"x": {4, 8}},
		Seed: 1, Warmup: 2, Runs: 5, Options: Options{Threads: 1, Provider: "cpu"},
		Gates: DefaultGates, Worker: []string{os.Args[0]},
	}
}

func TestBenchAgainstBaseline(t *testing.T) {
	dir := t.TempDir()
	good := writeClassifier(t, dir, 1)
	brokenDir := t.TempDir()
	broken := writeClassifier(t, brokenDir, 8)
	for _, tc := range []struct {
		name     string
		baseline string
		pass     bool
	}{
		{"same model", good, true},
		{"weights times 8", broken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Bench(context.Background(), testConfig(t, tc.baseline, good))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []ModelReport{rep.Model, *rep.Baseline} {
				l := m.LatencyMS
				if !(m.LoadMS > 0 && m.FirstInferenceMS > 0 && l.P50 > 0 && l.P95 >= l.P50 && l.Max >= l.P95 && l.Min <= l.P50) {
					t.Errorf("%s: implausible timings %+v load %v first %v", m.Path, l, m.LoadMS, m.FirstInferenceMS)
				}
				if m.PeakRSS.Load <= 0 || m.PeakRSS.Run <= 0 {
					t.Errorf("%s: peak RSS %+v", m.Path, m.PeakRSS)
				}
				if m.Files["classifier.onnx.data"] != 128 || m.SizeBytes <= 128 || m.Provider != "cpu" {
					t.Errorf("%s: files %v size %d provider %s", m.Path, m.Files, m.SizeBytes, m.Provider)
				}
			}
			if rep.Speedup == nil || *rep.Speedup <= 0 {
				t.Errorf("speedup %v", rep.Speedup)
			}
			q, ok := rep.Quality["probs"]
			if !ok || q.Top1 == nil {
				t.Fatalf("quality %+v: want probs with top-1", rep.Quality)
			}
			if rep.Gates.Passed != tc.pass {
				t.Errorf("passed = %v, want %v (failures %v)", rep.Gates.Passed, tc.pass, rep.Gates.Failures)
			}
			if tc.pass {
				if q.Cosine < 1-1e-9 || q.MaxAbs != 0 || *q.Top1 != 1 {
					t.Errorf("same model: %+v", q)
				}
			} else if !strings.Contains(strings.Join(rep.Gates.Failures, ";"), "probs: cosine") {
				t.Errorf("failures %v: want probs cosine", rep.Gates.Failures)
			}
			b, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(b, &back); err != nil || back.Model.LatencyMS != rep.Model.LatencyMS {
				t.Errorf("JSON round trip: %v", err)
			}
		})
	}
}
