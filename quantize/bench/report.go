package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelctl/modelctl/internal/humanize"
)

// ReportSchema is the version of the Report JSON. Fields are only ever
// added; a change in meaning bumps it.
const ReportSchema = 1

// Report is the result of `modelctl bench`; its JSON (--json) is what
// `modelctl push --bench` turns into manifest annotations. It holds no arrays
// of objects (per-output and per-file figures are maps keyed by name), so it
// flattens into annotation keys such as model.latency_ms.p50.
type Report struct {
	Schema  int       `json:"schema"`
	Created time.Time `json:"created"`
	// Model is the model under test; Baseline, when given, the reference
	// (usually the FP32 parent) measured in the same conditions.
	Model    ModelReport  `json:"model"`
	Baseline *ModelReport `json:"baseline,omitempty"`
	// Speedup is the baseline's p50 latency over the model's (>1: faster).
	Speedup *float64 `json:"speedup,omitempty"`
	// SizeRatio is the model's total size over the baseline's.
	SizeRatio *float64 `json:"size_ratio,omitempty"`
	// Quality compares each output of the model with the baseline's, by
	// output name; outputs that are not floating point are absent.
	Quality map[string]Quality `json:"quality,omitempty"`
	// Worst is the worst figure over all outputs, the one the gates judge.
	Worst *Quality   `json:"quality_worst,omitempty"`
	Gates GateResult `json:"gates"`
	// Hint names the likely cause of failed gates and the fix, when known.
	Hint string `json:"hint,omitempty"`
	// SizeNotSpeed says, when the model is smaller than the baseline but
	// slower on this machine, that its mode buys size and not speed here.
	SizeNotSpeed string `json:"size_not_speed,omitempty"`
	// Reference carries the inputs and the baseline's outputs for push to
	// store with the artifact (sync --check replays them on the server);
	// ReferenceNote says why there is none with a baseline.
	Reference     *Reference `json:"reference,omitempty"`
	ReferenceNote string     `json:"reference_note,omitempty"`
	// Inputs describes what the models were fed, by input name.
	Inputs      map[string]InputReport `json:"inputs"`
	Settings    Settings               `json:"settings"`
	Environment Environment            `json:"environment"`
}

// ModelReport holds one model's measurements, taken in a process of its own.
type ModelReport struct {
	Path string `json:"path"`
	// Files maps each file of the model (graph, external data) to its size.
	Files     map[string]int64 `json:"files"`
	SizeBytes int64            `json:"size_bytes"`
	// Provider is the execution provider the session ran on.
	Provider         string  `json:"provider"`
	LoadMS           float64 `json:"load_ms"`
	FirstInferenceMS float64 `json:"first_inference_ms"`
	LatencyMS        Latency `json:"latency_ms"`
	// PeakRSS is the process's peak resident memory after loading and at
	// the end of the timed runs (Run >= Load), in bytes.
	PeakRSS PeakRSS `json:"peak_rss_bytes"`
}

// PeakRSS is peak resident memory in bytes.
type PeakRSS struct {
	Load int64 `json:"load"`
	Run  int64 `json:"run"`
}

// InputReport says what one input was.
type InputReport struct {
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	// Source is "generated" (seeded) or the .npy file it came from.
	Source string `json:"source"`
}

// Settings are the options the benchmark ran with.
type Settings struct {
	Warmup   int    `json:"warmup"`
	Runs     int    `json:"runs"`
	Threads  int    `json:"threads"`
	Provider string `json:"provider"`
	Seed     int64  `json:"seed"`
}

// Environment is where the benchmark ran.
type Environment struct {
	ONNXRuntime string `json:"onnxruntime"`
	// Providers are the execution providers the library lists (not all of
	// them need initialize: see modelctl doctor).
	Providers   []string `json:"providers_available"`
	OS          string   `json:"os"`
	Arch        string   `json:"arch"`
	CPU         string   `json:"cpu,omitempty"`
	CPUFeatures []string `json:"cpu_features"`
	CPUs        int      `json:"cpus"`
	Modelctl    string   `json:"modelctl,omitempty"`
}

// Gates are the quality thresholds an output must meet against the
// baseline. A zero Gates disables nothing: use DefaultGates.
type Gates struct {
	MinCosine float64 `json:"min_cosine"`
	MaxMSE    float64 `json:"max_mse"`
	MaxMAE    float64 `json:"max_mae"`
}

// DefaultGates are the acceptance criteria of a quantized model.
var DefaultGates = Gates{MinCosine: 0.98, MaxMSE: 0.01, MaxMAE: 0.05}

// GateResult is the verdict of the gates. Without a baseline nothing is
// compared and Passed is true.
type GateResult struct {
	Gates
	Passed bool `json:"passed"`
	// Failures lists each violation, e.g. "probs: cosine 0.71 < 0.98".
	Failures []string `json:"failures,omitempty"`
	// Failing holds the failing outputs' figures, for the table.
	Failing []string `json:"-"`
}

// Judge applies the gates to the report's quality figures. NaN (outputs
// holding NaN or Inf) fails every gate.
func (r *Report) Judge(g Gates) {
	res := GateResult{Gates: g, Passed: true}
	names := make([]string, 0, len(r.Quality))
	for n := range r.Quality {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q := r.Quality[n]
		failed := false
		fail := func(format string, args ...any) {
			res.Failures = append(res.Failures, n+": "+fmt.Sprintf(format, args...))
			failed = true
		}
		if !(q.Cosine >= g.MinCosine) {
			fail("cosine %.6g < %g", q.Cosine, g.MinCosine)
		}
		if !(q.MSE <= g.MaxMSE) {
			fail("mse %.6g > %g", q.MSE, g.MaxMSE)
		}
		if !(q.MAE <= g.MaxMAE) {
			fail("mae %.6g > %g", q.MAE, g.MaxMAE)
		}
		if failed {
			res.Failing = append(res.Failing, n)
		}
	}
	res.Passed = len(res.Failures) == 0
	r.Gates = res
}

// worst combines per-output figures into the worst of each.
func worst(qs map[string]Quality) *Quality {
	if len(qs) == 0 {
		return nil
	}
	w := Quality{Cosine: math.Inf(1)}
	var top1 *float64
	for _, q := range qs {
		w.Cosine = minNaN(w.Cosine, q.Cosine)
		w.MSE = maxNaN(w.MSE, q.MSE)
		w.MAE = maxNaN(w.MAE, q.MAE)
		w.MaxAbs = maxNaN(w.MaxAbs, q.MaxAbs)
		if q.Top1 != nil && (top1 == nil || *q.Top1 < *top1) {
			v := *q.Top1
			top1 = &v
		}
	}
	w.Top1 = top1
	return &w
}

// minNaN and maxNaN let NaN win, so a NaN output shows in the summary.
func minNaN(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return math.Min(a, b)
}

func maxNaN(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return math.Max(a, b)
}

// WriteTable prints the report for a person.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	header := []string{"", "model"}
	if r.Baseline != nil {
		header = append(header, "baseline")
	}
	row(header...)
	models := []*ModelReport{&r.Model}
	if r.Baseline != nil {
		models = append(models, r.Baseline)
	}
	line := func(name string, f func(m *ModelReport) string) {
		cells := []string{name}
		for _, m := range models {
			cells = append(cells, f(m))
		}
		row(cells...)
	}
	line("size", func(m *ModelReport) string { return humanize.Bytes(m.SizeBytes) })
	line("provider", func(m *ModelReport) string { return m.Provider })
	line("load", func(m *ModelReport) string { return ms(m.LoadMS) })
	line("first inference", func(m *ModelReport) string { return ms(m.FirstInferenceMS) })
	line("p50", func(m *ModelReport) string { return ms(m.LatencyMS.P50) })
	line("p95", func(m *ModelReport) string { return ms(m.LatencyMS.P95) })
	line("mean ± std", func(m *ModelReport) string {
		return fmt.Sprintf("%s ± %s", ms(m.LatencyMS.Mean), ms(m.LatencyMS.Std))
	})
	line("peak RSS load", func(m *ModelReport) string { return humanize.Bytes(m.PeakRSS.Load) })
	line("peak RSS run", func(m *ModelReport) string { return humanize.Bytes(m.PeakRSS.Run) })
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d warmup, %d timed runs, threads %s, onnxruntime %s\n",
		r.Settings.Warmup, r.Settings.Runs, threadsString(r.Settings.Threads), r.Environment.ONNXRuntime)
	if r.Speedup != nil {
		fmt.Fprintf(w, "speedup %.2fx (baseline p50 / model p50), size %.0f%% of baseline\n", *r.Speedup, 100**r.SizeRatio)
	}
	if r.SizeNotSpeed != "" {
		fmt.Fprintln(w, r.SizeNotSpeed)
	}
	if len(r.Quality) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row("output", "cosine", "mse", "mae", "max abs", "top-1", "")
	names := make([]string, 0, len(r.Quality))
	for n := range r.Quality {
		names = append(names, n)
	}
	sort.Strings(names)
	failing := map[string]bool{}
	for _, n := range r.Gates.Failing {
		failing[n] = true
	}
	for _, n := range names {
		q := r.Quality[n]
		top := "-"
		if q.Top1 != nil {
			top = fmt.Sprintf("%.1f%%", 100**q.Top1)
		}
		verdict := "ok"
		if failing[n] {
			verdict = "FAIL"
		}
		row(n, fmt.Sprintf("%.6f", q.Cosine), fmt.Sprintf("%.3g", q.MSE), fmt.Sprintf("%.3g", q.MAE), fmt.Sprintf("%.3g", q.MaxAbs), top, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	g := r.Gates
	fmt.Fprintf(w, "\ngates: cosine >= %g, mse <= %g, mae <= %g: ", g.MinCosine, g.MaxMSE, g.MaxMAE)
	if g.Passed {
		fmt.Fprintln(w, "passed")
		return nil
	}
	fmt.Fprintf(w, "FAILED (%d)\n", len(g.Failures))
	for _, f := range g.Failures {
		fmt.Fprintf(w, "  %s\n", f)
	}
	return nil
}

func threadsString(n int) string {
	if n <= 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.3f ms", v)
}

// sizeNotSpeed is the plain statement that a model buys size but not speed
// on this machine (smaller than its baseline and slower), with the reason
// when the mode explains it; "" when it is not so.
func sizeNotSpeed(speedup, sizeRatio float64, mode, provider string) string {
	if speedup >= 1 || sizeRatio >= 1 || speedup <= 0 {
		return ""
	}
	why := ""
	switch {
	case mode == "fp16" && provider == "cpu":
		why = ": onnxruntime's CPU provider computes few operators in float16 and converts around the rest"
	case mode == "int4" && provider == "cpu":
		why = ": on CPU, MatMulNBits unpacks the 4-bit weights on every call"
	case mode == "int8":
		why = ": the integer kernels do not win back the activation quantization they add on these shapes"
	}
	m := mode
	if m == "" {
		m = "this model"
	}
	return fmt.Sprintf("%s buys size, not speed, on this machine: %.0f%% of the baseline's size but %.2fx its speed%s",
		m, 100*sizeRatio, speedup, why)
}
