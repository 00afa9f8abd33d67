package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/modelctl/modelctl/internal/hostcpu"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
)

// WorkerCommand is the hidden subcommand that runs one model for Bench in a
// process of its own (see ServeWorker).
const WorkerCommand = "__bench-worker"

// Config is one benchmark: a model, optionally a baseline to compare with,
// and how to run them.
type Config struct {
	Model    string
	Baseline string // "" for none
	// Shapes binds dynamic input dimensions by input name (--shape).
	Shapes map[string][]int64
	// InputFiles gives inputs as .npy files by input name (--input); the
	// others are generated from Seed.
	InputFiles map[string]string
	Seed       int64
	Warmup     int
	Runs       int
	Options
	Gates Gates
	// Worker is the command line that starts a worker process (one that
	// calls ServeWorker); nil runs this executable with WorkerCommand.
	Worker []string
	// Version is the modelctl version recorded in the report.
	Version string
	// Progress, when non-nil, receives a line per step (a terminal).
	Progress io.Writer
}

func (c Config) progressf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "bench: "+format+"\n", args...)
	}
}

// Bench measures the model (and the baseline) and compares their outputs.
// Each model runs in its own worker process, so peak memory and load time
// are the model's alone; with a baseline the two alternate run by run (in
// ABBA order), so both see the same machine conditions. The gates are
// judged into the report; a failed gate is not an error.
func Bench(ctx context.Context, cfg Config) (*Report, error) {
	if !cgoEnabled {
		return nil, ErrNoCgo
	}
	if cfg.Runs < 1 {
		return nil, fmt.Errorf("bench: --runs %d: need at least 1", cfg.Runs)
	}
	if cfg.Warmup < 0 {
		return nil, fmt.Errorf("bench: --warmup %d: must not be negative", cfg.Warmup)
	}
	if _, err := cfg.provider(); err != nil {
		return nil, err
	}
	lib, err := LibraryPath(cfg.LibraryPath)
	if err != nil {
		return nil, err
	}
	cfg.LibraryPath = lib

	info, err := ReadModelInfo(cfg.Model)
	if err != nil {
		return nil, err
	}
	given := map[string]Tensor{}
	for name, path := range cfg.InputFiles {
		t, err := ReadNPY(path, name)
		if err != nil {
			return nil, fmt.Errorf("--input %s: %w", name, err)
		}
		given[name] = t
	}
	inputs, err := generate(info, cfg.Shapes, given, cfg.Seed)
	if err != nil {
		return nil, err
	}
	report := &Report{
		Schema: ReportSchema, Created: time.Now().UTC().Truncate(time.Second),
		Inputs: map[string]InputReport{},
		Settings: Settings{Warmup: cfg.Warmup, Runs: cfg.Runs, Threads: cfg.Threads,
			Provider: providerSetting(cfg.Provider), Seed: cfg.Seed},
		Environment: Environment{OS: runtime.GOOS, Arch: runtime.GOARCH, CPU: cpuName(),
			CPUFeatures: CPUFeatures(), CPUs: runtime.NumCPU(), Modelctl: cfg.Version},
	}
	for _, t := range inputs {
		src := "generated"
		if p, ok := cfg.InputFiles[t.Name]; ok {
			src = p
		}
		report.Inputs[t.Name] = InputReport{DType: t.DType, Shape: t.Shape, Source: src}
	}

	tmp, err := os.MkdirTemp("", "modelctl-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)

	type subject struct {
		path   string
		info   *ModelInfo
		inputs []Tensor
		w      *worker
		rep    *ModelReport
		runs   []time.Duration
	}
	subjects := []*subject{{path: cfg.Model, info: info, inputs: inputs, rep: &report.Model}}
	if cfg.Baseline != "" {
		binfo, err := ReadModelInfo(cfg.Baseline)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		binputs, err := baselineInputs(binfo, inputs)
		if err != nil {
			return nil, fmt.Errorf("baseline %s: %w", cfg.Baseline, err)
		}
		report.Baseline = &ModelReport{}
		subjects = append(subjects, &subject{path: cfg.Baseline, info: binfo, inputs: binputs, rep: report.Baseline})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, s := range subjects {
		files, err := ModelFiles(s.path, s.info)
		if err != nil {
			return nil, err
		}
		s.rep.Path = s.path
		s.rep.Files = map[string]int64{}
		for _, f := range files {
			s.rep.Files[f.Path] = f.Bytes
			s.rep.SizeBytes += f.Bytes
		}
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		var refs []tensorFile
		for j, t := range s.inputs {
			p := filepath.Join(dir, fmt.Sprintf("in%d.npy", j))
			if err := WriteNPY(p, t); err != nil {
				return nil, fmt.Errorf("bench: input %q: %w", t.Name, err)
			}
			refs = append(refs, tensorFile{Name: t.Name, DType: t.DType, Path: p})
		}
		w, err := startWorker(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer w.close()
		s.w = w
		// Models load one after the other, so neither load competes for CPU.
		cfg.progressf("loading %s", s.path)
		rep, err := w.call(request{Op: "load", Model: s.path, LibraryPath: cfg.LibraryPath,
			Threads: cfg.Threads, Provider: cfg.Provider, Inputs: refs})
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", s.path, err)
		}
		s.rep.Provider = rep.Provider
		s.rep.LoadMS = nsToMS(rep.LoadNS)
		s.rep.PeakRSS.Load = rep.PeakRSS
		report.Environment.ONNXRuntime = rep.Version
		report.Environment.Providers = rep.Available
	}

	run := func(s *subject, record bool) error {
		rep, err := s.w.call(request{Op: "run", N: 1})
		if err != nil {
			return fmt.Errorf("run %s: %w", s.path, err)
		}
		if record {
			s.runs = append(s.runs, time.Duration(rep.RunsNS[0]))
		}
		return nil
	}
	for _, s := range subjects {
		rep, err := s.w.call(request{Op: "run", N: 1})
		if err != nil {
			return nil, fmt.Errorf("first inference of %s: %w", s.path, err)
		}
		s.rep.FirstInferenceMS = nsToMS(rep.RunsNS[0])
	}
	cfg.progressf("%d warmup and %d timed runs per model", cfg.Warmup, cfg.Runs)
	for i := 0; i < cfg.Warmup+cfg.Runs; i++ {
		order := subjects
		if i%2 == 1 && len(subjects) == 2 {
			order = []*subject{subjects[1], subjects[0]}
		}
		for _, s := range order {
			if err := run(s, i >= cfg.Warmup); err != nil {
				return nil, err
			}
		}
	}
	outputs := make([][]Tensor, len(subjects))
	for i, s := range subjects {
		s.rep.LatencyMS = Summarize(s.runs)
		rep, err := s.w.call(request{Op: "outputs", Dir: filepath.Join(tmp, fmt.Sprint(i))})
		if err != nil {
			return nil, fmt.Errorf("outputs of %s: %w", s.path, err)
		}
		// Where the peak could not be reset after loading (not Linux), the
		// run peak is the process's peak, loading included.
		s.rep.PeakRSS.Run = rep.PeakRSS
		for _, f := range rep.Outputs {
			t, err := ReadNPY(f.Path, f.Name)
			if err != nil {
				return nil, fmt.Errorf("outputs of %s: %w", s.path, err)
			}
			t.DType = f.DType // bfloat16 travels as uint16
			outputs[i] = append(outputs[i], t)
		}
		if _, err := s.w.call(request{Op: "quit"}); err != nil {
			return nil, err
		}
	}
	if len(subjects) == 2 {
		b := report.Baseline
		if report.Model.LatencyMS.P50 > 0 {
			v := b.LatencyMS.P50 / report.Model.LatencyMS.P50
			report.Speedup = &v
		}
		if b.SizeBytes > 0 {
			v := float64(report.Model.SizeBytes) / float64(b.SizeBytes)
			report.SizeRatio = &v
		}
		if report.Speedup != nil && report.SizeRatio != nil {
			report.SizeNotSpeed = sizeNotSpeed(*report.Speedup, *report.SizeRatio, info.Mode, report.Model.Provider)
		}
		q, err := compareOutputs(outputs[1], outputs[0])
		if err != nil {
			return nil, err
		}
		report.Quality = q
		report.Worst = worst(q)
	}
	report.Judge(cfg.Gates)
	if len(subjects) == 2 {
		ref, note, err := NewReference(inputs, outputs[1], cfg.Gates, report.Quality)
		if err != nil {
			return nil, err
		}
		report.Reference, report.ReferenceNote = ref, note
	}
	if !report.Gates.Passed {
		report.Hint = gateHint(ctx, cfg.Model, hostcpu.Host())
	}
	return report, nil
}

// gateHint explains a failed gate when the cause is known: full-range int8
// weights on a CPU whose kernel sums pairs of products in 16 bits.
func gateHint(ctx context.Context, model string, cpu manifests.CPU) string {
	if manifests.CheckCPU(manifests.RequireVNNI, cpu) == nil {
		return ""
	}
	w, err := quantize.VNNIWeights(ctx, model)
	if err != nil || len(w) == 0 {
		return ""
	}
	return fmt.Sprintf("likely cause: this CPU has no VNNI and %d int8 weights of the model are full range (%s): "+
		"onnxruntime sums pairs of their products in 16 bits here and saturates. Fix: quantize again without --full-range "+
		"(the default is portable) or with --reduce-range", len(w), firstNames(w, 3))
}

func firstNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, ... %d more", strings.Join(names[:n], ", "), len(names)-n)
}

func providerSetting(p string) string {
	if p == "" {
		return "cpu"
	}
	return p
}

func nsToMS(ns int64) float64 { return float64(ns) / 1e6 }

// baselineInputs feeds the baseline what the model gets, by input name,
// converting between float types (an fp16 model against its fp32 parent).
func baselineInputs(binfo *ModelInfo, inputs []Tensor) ([]Tensor, error) {
	byName := map[string]Tensor{}
	for _, t := range inputs {
		byName[t.Name] = t
	}
	out := make([]Tensor, 0, len(binfo.Inputs))
	for _, in := range binfo.Inputs {
		t, ok := byName[in.Name]
		if !ok {
			return nil, fmt.Errorf("its input %q is not an input of the model", in.Name)
		}
		if t.DType != in.DType {
			c, err := castFloat(t, in.DType)
			if err != nil {
				return nil, fmt.Errorf("input %q: %w", in.Name, err)
			}
			t = c
		}
		if _, err := ResolveShape(in, t.Shape); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// castFloat converts a float tensor to another float type.
func castFloat(t Tensor, dtype string) (Tensor, error) {
	if !t.IsFloat() || !(Tensor{DType: dtype}).IsFloat() {
		return Tensor{}, fmt.Errorf("the model takes %s, the baseline %s", t.DType, dtype)
	}
	v, err := t.Float64s()
	if err != nil {
		return Tensor{}, err
	}
	out := Tensor{Name: t.Name, DType: dtype, Shape: t.Shape}
	switch dtype {
	case Float32:
		d := make([]float32, len(v))
		for i, x := range v {
			d[i] = float32(x)
		}
		out.Data = d
	case Float64:
		out.Data = v
	case Float16, BFloat16:
		d := make([]uint16, len(v))
		for i, x := range v {
			if dtype == Float16 {
				d[i] = Float32ToHalf(float32(x))
			} else {
				d[i] = uint16(math.Float32bits(float32(x)) >> 16)
			}
		}
		out.Data = d
	}
	return out, nil
}

// compareOutputs compares the model's float outputs with the baseline's of
// the same name.
func compareOutputs(ref, got []Tensor) (map[string]Quality, error) {
	byName := map[string]Tensor{}
	for _, t := range ref {
		byName[t.Name] = t
	}
	q := map[string]Quality{}
	var missing []string
	for _, t := range got {
		r, ok := byName[t.Name]
		if !ok {
			missing = append(missing, t.Name)
			continue
		}
		if !t.IsFloat() || !r.IsFloat() {
			continue
		}
		s, err := Similarity(r, t)
		if err != nil {
			return nil, err
		}
		q[t.Name] = s
	}
	if len(q) == 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("compare with baseline: no float output in common (model outputs missing from the baseline: %v)", missing)
	}
	return q, nil
}

// The worker protocol: one JSON request per line on the worker's stdin, one
// JSON reply per line on its stdout.

type tensorFile struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Path  string `json:"path"`
}

type request struct {
	Op          string       `json:"op"` // load, run, outputs, quit
	Model       string       `json:"model,omitempty"`
	LibraryPath string       `json:"ort_lib,omitempty"`
	Threads     int          `json:"threads,omitempty"`
	Provider    string       `json:"provider,omitempty"`
	Inputs      []tensorFile `json:"inputs,omitempty"`
	N           int          `json:"n,omitempty"`
	Dir         string       `json:"dir,omitempty"`
}

type reply struct {
	Error     string       `json:"error,omitempty"`
	Version   string       `json:"version,omitempty"`
	Available []string     `json:"available,omitempty"`
	Provider  string       `json:"provider,omitempty"`
	LoadNS    int64        `json:"load_ns,omitempty"`
	RunsNS    []int64      `json:"runs_ns,omitempty"`
	PeakRSS   int64        `json:"peak_rss,omitempty"`
	PeakReset bool         `json:"peak_reset,omitempty"`
	Outputs   []tensorFile `json:"outputs,omitempty"`
}

type worker struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	done chan error
}

func startWorker(ctx context.Context, cfg Config) (*worker, error) {
	argv := cfg.Worker
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: find this executable to start a worker: %w", err)
		}
		argv = []string{exe, WorkerCommand}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = cfg.Warn
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: worker: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: worker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker %s: %w", argv[0], err)
	}
	w := &worker{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out)), done: make(chan error, 1)}
	return w, nil
}

func (w *worker) call(req request) (reply, error) {
	b, _ := json.Marshal(req)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return reply{}, fmt.Errorf("worker: %w: %v", err, w.wait())
	}
	var rep reply
	if err := w.out.Decode(&rep); err != nil {
		if req.Op == "quit" && errors.Is(err, io.EOF) {
			return rep, w.wait()
		}
		return reply{}, fmt.Errorf("worker died (%v): %v", w.wait(), err)
	}
	if rep.Error != "" {
		return reply{}, errors.New(rep.Error)
	}
	if req.Op == "run" && len(rep.RunsNS) != req.N {
		return reply{}, fmt.Errorf("worker: %d timings for %d runs", len(rep.RunsNS), req.N)
	}
	return rep, nil
}

func (w *worker) wait() error {
	w.in.Close()
	return w.cmd.Wait()
}

// close stops the worker if it is still running.
func (w *worker) close() {
	w.in.Close()
	if w.cmd.ProcessState == nil {
		_ = w.cmd.Process.Kill()
		_ = w.cmd.Wait()
	}
}

// ServeWorker runs the worker side of Bench: it loads one model and runs it
// on request, reading requests from r and writing replies to w, until quit
// or the end of r. It is what WorkerCommand runs.
func ServeWorker(ctx context.Context, r io.Reader, w io.Writer, warn io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	enc := json.NewEncoder(w)
	var s *Session
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("bench worker: read request: %w", err)
		}
		rep, quit := serve(ctx, &s, req, warn)
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("bench worker: write reply: %w", err)
		}
		if quit {
			return nil
		}
	}
}

func serve(ctx context.Context, sp **Session, req request, warn io.Writer) (reply, bool) {
	fail := func(err error) (reply, bool) { return reply{Error: err.Error()}, false }
	s := *sp
	switch req.Op {
	case "load":
		if s != nil {
			return fail(errors.New("a model is loaded already"))
		}
		start := clockNow()
		var err error
		s, err = Load(ctx, req.Model, Options{LibraryPath: req.LibraryPath, Threads: req.Threads, Provider: req.Provider, Warn: warn})
		elapsed := clockSince(start)
		if err != nil {
			return fail(err)
		}
		*sp = s
		rep := reply{Version: runtimeVersion(), Available: availableProviders(), Provider: s.Provider(), LoadNS: elapsed.Nanoseconds(), PeakRSS: peakRSS()}
		// Reading the inputs is part of running, not loading.
		rep.PeakReset = resetPeakRSS()
		inputs := make([]Tensor, len(req.Inputs))
		for i, f := range req.Inputs {
			t, err := ReadNPY(f.Path, f.Name)
			if err != nil {
				return fail(err)
			}
			t.DType = f.DType
			inputs[i] = t
		}
		if err := s.SetInputs(inputs); err != nil {
			return fail(err)
		}
		return rep, false
	case "run":
		if s == nil {
			return fail(errors.New("no model loaded"))
		}
		rep := reply{}
		for i := 0; i < max(req.N, 1); i++ {
			d, err := s.RunOnce(ctx)
			if err != nil {
				return fail(err)
			}
			rep.RunsNS = append(rep.RunsNS, d.Nanoseconds())
		}
		return rep, false
	case "outputs":
		if s == nil {
			return fail(errors.New("no model loaded"))
		}
		outs, err := s.Outputs()
		if err != nil {
			return fail(err)
		}
		rep := reply{PeakRSS: peakRSS()}
		for i, t := range outs {
			p := filepath.Join(req.Dir, fmt.Sprintf("out%d.npy", i))
			if !t.IsFloat() {
				continue // only float outputs are compared
			}
			if err := WriteNPY(p, t); err != nil {
				return fail(err)
			}
			rep.Outputs = append(rep.Outputs, tensorFile{Name: t.Name, DType: t.DType, Path: p})
		}
		return rep, false
	case "quit":
		return reply{}, true
	}
	return fail(fmt.Errorf("unknown request %q", req.Op))
}
