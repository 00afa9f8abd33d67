//go:build cgo

package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// onnxruntime keeps one environment per process, bound to one library.
var (
	envMu   sync.Mutex
	envPath string
)

// initRuntime loads the library (once per process) and returns its path.
func initRuntime(explicit string) (string, error) {
	path, err := LibraryPath(explicit)
	if err != nil {
		return "", err
	}
	envMu.Lock()
	defer envMu.Unlock()
	if envPath != "" {
		if envPath != path {
			return "", fmt.Errorf("onnxruntime %s: this process already loaded %s", path, envPath)
		}
		return path, nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("load onnxruntime %s: %w", path, err)
	}
	envPath = path
	return path, nil
}

// Runtime loads onnxruntime and describes it: version, build, the providers
// it lists, and for cpu, cuda, directml and coreml whether a session with
// that provider initializes.
func Runtime(explicit string) (*RuntimeInfo, error) {
	path, err := initRuntime(explicit)
	if err != nil {
		return nil, err
	}
	version, build, available, err := libraryInfo(path)
	if err != nil {
		return nil, err
	}
	info := &RuntimeInfo{Path: path, Version: version, Build: build, Available: available}
	for _, name := range []string{"cpu", "cuda", "directml", "coreml"} {
		st := ProviderStatus{Name: name, ORTName: providerNames[name], Available: slices.Contains(available, providerNames[name])}
		so, err := ort.NewSessionOptions()
		if err != nil {
			return nil, fmt.Errorf("onnxruntime session options: %w", err)
		}
		if err := appendProvider(so, name); err != nil {
			st.Error = err.Error()
		} else {
			st.Initializes = true
		}
		so.Destroy()
		info.Providers = append(info.Providers, st)
	}
	return info, nil
}

// appendProvider adds an execution provider to session options; the CPU
// provider is always there. A provider that fails to load logs an error of
// its own besides returning it; the caller reports the error, so the log is
// silenced meanwhile.
func appendProvider(so *ort.SessionOptions, name string) error {
	if name != "cpu" {
		_ = ort.SetEnvironmentLogLevel(ort.LoggingLevelFatal)
		defer ort.SetEnvironmentLogLevel(ort.LoggingLevelError)
	}
	switch name {
	case "cpu":
		return nil
	case "cuda":
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return fmt.Errorf("cuda: %w", err)
		}
		defer co.Destroy()
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			return fmt.Errorf("cuda: %w", err)
		}
		return nil
	case "directml":
		if err := so.AppendExecutionProviderDirectML(0); err != nil {
			return fmt.Errorf("directml: %w", err)
		}
		return nil
	case "coreml":
		if err := so.AppendExecutionProviderCoreMLV2(nil); err != nil {
			return fmt.Errorf("coreml: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unknown provider %q", name)
}

// Session is a loaded model ready to run repeatedly on the same inputs.
type Session struct {
	path     string
	info     *ModelInfo
	sess     *ort.DynamicAdvancedSession
	provider string
	inputs   []ort.Value
	outputs  []ort.Value
	// bound: outputs are preallocated from the first run's shapes, so
	// timed runs neither allocate nor copy.
	bound bool
}

// Load creates an onnxruntime session for the model with the options'
// provider and threads. With provider auto, it tries the accelerated
// providers in turn and falls back to cpu with a warning.
func Load(ctx context.Context, modelPath string, opts Options) (*Session, error) {
	want, err := opts.provider()
	if err != nil {
		return nil, err
	}
	if _, err := initRuntime(opts.LibraryPath); err != nil {
		return nil, err
	}
	info, err := ReadModelInfo(modelPath)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return loadWith(ctx, modelPath, info, opts, want, func(in, out []string, so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
		return ort.NewDynamicAdvancedSession(modelPath, in, out, so)
	})
}

// LoadBytes creates a session for a model held in memory whose external
// data locations are relative to dataDir, as Load does for a file. It is
// how a piece of a large model runs (quantize/auto): the piece's graph is
// small and built in memory, its initializers are references into the
// original model's files, which onnxruntime then reads in place; no copy of
// the weights is written. name labels the model in errors.
func LoadBytes(ctx context.Context, name string, model []byte, dataDir string, opts Options) (*Session, error) {
	want, err := opts.provider()
	if err != nil {
		return nil, err
	}
	if _, err := initRuntime(opts.LibraryPath); err != nil {
		return nil, err
	}
	info, err := ReadModelInfoBytes(name, model)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return loadWith(ctx, name, info, opts, want, func(in, out []string, so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
		// Locations in the graph are relative to this folder, and
		// onnxruntime checks that they stay inside it.
		if err := so.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", dataDir); err != nil {
			return nil, fmt.Errorf("external data folder %s: %w", dataDir, err)
		}
		return ort.NewDynamicAdvancedSessionWithONNXData(model, in, out, so)
	})
}

// sessionMaker creates onnxruntime's session from a file or from bytes.
type sessionMaker func(in, out []string, so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error)

func loadWith(ctx context.Context, modelPath string, info *ModelInfo, opts Options, want string, create sessionMaker) (*Session, error) {
	candidates := []string{want}
	if want == "auto" {
		candidates = append(slices.Clone(autoOrder), "cpu")
	}
	var tried []string
	for _, p := range candidates {
		s, err := newSession(modelPath, info, p, opts.Threads, create)
		if err == nil {
			if want == "auto" && p == "cpu" {
				opts.warnf("--provider auto: no accelerated provider initialized (%s); running on cpu", strings.Join(tried, "; "))
			}
			return s, nil
		}
		if want != "auto" || p == "cpu" {
			return nil, fmt.Errorf("load %s with provider %s: %w", modelPath, p, err)
		}
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("load %s: no provider to try", modelPath)
}

func newSession(modelPath string, info *ModelInfo, provider string, threads int, create sessionMaker) (*Session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer so.Destroy()
	if threads > 0 {
		if err := so.SetIntraOpNumThreads(threads); err != nil {
			return nil, fmt.Errorf("threads %d: %w", threads, err)
		}
		// One inter-op thread: benchmarks with --threads 1 must not run
		// graph branches in parallel behind the user's back.
		if err := so.SetInterOpNumThreads(1); err != nil {
			return nil, fmt.Errorf("inter-op threads: %w", err)
		}
	}
	if err := appendProvider(so, provider); err != nil {
		return nil, err
	}
	in := make([]string, len(info.Inputs))
	for i, v := range info.Inputs {
		in[i] = v.Name
	}
	out := make([]string, len(info.Outputs))
	for i, v := range info.Outputs {
		out[i] = v.Name
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the model declares no outputs")
	}
	if len(in) == 0 {
		// onnxruntime_go indexes the first input unconditionally.
		return nil, fmt.Errorf("the model declares no inputs, which onnxruntime_go cannot run")
	}
	sess, err := create(in, out, so)
	if err != nil {
		return nil, err
	}
	return &Session{path: modelPath, info: info, sess: sess, provider: provider}, nil
}

// Provider is the execution provider the session runs on.
func (s *Session) Provider() string { return s.provider }

// Info is the model's declared inputs and outputs.
func (s *Session) Info() *ModelInfo { return s.info }

// SetInputs binds the inputs for the following runs; they must be in the
// model's declared input order.
func (s *Session) SetInputs(inputs []Tensor) error {
	if len(inputs) != len(s.info.Inputs) {
		return fmt.Errorf("run %s: %d inputs given, the model declares %d (%s)", s.path, len(inputs), len(s.info.Inputs), inputNames(s.info))
	}
	vals := make([]ort.Value, len(inputs))
	for i, t := range inputs {
		if t.Name != s.info.Inputs[i].Name {
			destroyAll(vals)
			return fmt.Errorf("run %s: input %d is %q, the model declares %q there", s.path, i, t.Name, s.info.Inputs[i].Name)
		}
		v, err := toValue(t)
		if err != nil {
			destroyAll(vals)
			return fmt.Errorf("run %s: %w", s.path, err)
		}
		vals[i] = v
	}
	destroyAll(s.inputs)
	s.inputs = vals
	destroyAll(s.outputs)
	s.outputs, s.bound = nil, false
	return nil
}

// RunOnce runs the model once on the bound inputs and returns how long
// onnxruntime took. The first run learns the output shapes and preallocates
// the outputs, so later runs measure inference alone. Cancelling ctx stops
// the run in progress.
func (s *Session) RunOnce(ctx context.Context) (time.Duration, error) {
	if s.inputs == nil && len(s.info.Inputs) > 0 {
		return 0, fmt.Errorf("run %s: no inputs bound", s.path)
	}
	if s.outputs == nil {
		if err := s.preallocate(); err != nil {
			return 0, fmt.Errorf("run %s: %w", s.path, err)
		}
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", s.path, err)
	}
	defer ro.Destroy()
	stop := context.AfterFunc(ctx, func() { _ = ro.Terminate() })
	defer stop()
	start := clockNow()
	preset := slices.Clone(s.outputs)
	err = s.sess.RunWithOptions(s.inputs, s.outputs, ro)
	elapsed := clockSince(start)
	if err != nil {
		// A failed conversion leaves typed nils behind; keep only what we
		// allocated, so Close does not call Destroy on nil pointers.
		copy(s.outputs, preset)
		if ctx.Err() != nil {
			return 0, fmt.Errorf("run %s: %w", s.path, ctx.Err())
		}
		return 0, fmt.Errorf("run %s: %w", s.path, err)
	}
	if !s.bound {
		if err := s.bindOutputs(); err != nil {
			return 0, fmt.Errorf("run %s: %w", s.path, err)
		}
	}
	return elapsed, nil
}

// preallocate makes the outputs onnxruntime_go cannot allocate itself:
// declared scalars (it cannot wrap a rank-0 result) and float16/bfloat16
// tensors (it copies one byte per element of a type it does not know, and
// the copy then fails). Their shapes come from the declaration, with
// symbolic dimensions bound by the inputs' shapes.
func (s *Session) preallocate() error {
	s.outputs = make([]ort.Value, len(s.info.Outputs))
	params := map[string]int64{}
	for i, in := range s.info.Inputs {
		shape := s.inputs[i].GetShape()
		for j, d := range in.Shape {
			if d.Param != "" && j < len(shape) {
				params[d.Param] = shape[j]
			}
		}
	}
	for i, o := range s.info.Outputs {
		if o.Shape != nil && len(o.Shape) == 0 {
			v, err := newScalar(o.DType)
			if err != nil {
				return fmt.Errorf("output %q: %w", o.Name, err)
			}
			s.outputs[i] = v
			continue
		}
		if o.DType != Float16 && o.DType != BFloat16 {
			continue
		}
		shape := make([]int64, len(o.Shape))
		for j, d := range o.Shape {
			v, ok := d.Value, d.Value >= 0
			if !ok && d.Param != "" {
				v, ok = params[d.Param]
			}
			if !ok {
				return fmt.Errorf("output %q is %s with dynamic dimension %d (%s) not named by any input: onnxruntime_go %s cannot allocate it", o.Name, o.DType, j, d, "v1.27.0")
			}
			shape[j] = v
		}
		n, err := NumElements(shape)
		if err != nil || n == 0 || o.Shape == nil {
			return fmt.Errorf("output %q is %s with shape %s: onnxruntime_go cannot allocate it", o.Name, o.DType, dimsString(o.Shape))
		}
		dt := ort.TensorElementDataType(ort.TensorElementDataTypeFloat16)
		if o.DType == BFloat16 {
			dt = ort.TensorElementDataTypeBFloat16
		}
		v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), make([]byte, 2*n), dt)
		if err != nil {
			return fmt.Errorf("output %q: %w", o.Name, err)
		}
		s.outputs[i] = v
	}
	return nil
}

// bindOutputs replaces the outputs onnxruntime allocated on the first run
// with preallocated ones of the same type and shape. Those that cannot be
// preallocated (strings, empty tensors) stay allocated per run.
func (s *Session) bindOutputs() error {
	for i, v := range s.outputs {
		if v == nil {
			continue
		}
		if _, ok := v.(scalarValue); ok {
			continue
		}
		if _, ok := v.(*ort.CustomDataTensor); ok {
			continue // preallocated already
		}
		shape := v.GetShape()
		n, err := NumElements(shape)
		if err != nil || n == 0 || len(shape) == 0 {
			continue
		}
		var nv ort.Value
		switch t := v.(type) {
		case *ort.Tensor[float32]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[float64]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[int8]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[uint8]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[int16]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[uint16]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[int32]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[uint32]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[int64]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[uint64]:
			nv, err = cloneTensor(t)
		case *ort.Tensor[bool]:
			nv, err = cloneTensor(t)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("preallocate output %q: %w", s.info.Outputs[i].Name, err)
		}
		v.Destroy()
		s.outputs[i] = nv
	}
	s.bound = true
	return nil
}

// cloneTensor makes a tensor of the same shape holding a copy of the data,
// so the outputs stay those of the run that just happened.
func cloneTensor[T ort.TensorData](t *ort.Tensor[T]) (ort.Value, error) {
	return ort.NewTensor(t.GetShape().Clone(), slices.Clone(t.GetData()))
}

// Outputs copies the last run's outputs, in declared order.
func (s *Session) Outputs() ([]Tensor, error) {
	if !s.bound {
		return nil, fmt.Errorf("outputs of %s: the model has not run", s.path)
	}
	out := make([]Tensor, len(s.outputs))
	for i, v := range s.outputs {
		t, err := fromValue(s.info.Outputs[i].Name, v)
		if err != nil {
			return nil, fmt.Errorf("outputs of %s: %w", s.path, err)
		}
		out[i] = t
	}
	return out, nil
}

// Close releases the session and its tensors.
func (s *Session) Close() error {
	destroyAll(s.inputs)
	destroyAll(s.outputs)
	s.inputs, s.outputs = nil, nil
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	releaseFreedMemory()
	return err
}

func destroyAll(vals []ort.Value) {
	for _, v := range vals {
		if v != nil {
			v.Destroy()
		}
	}
}

// Run loads the model, runs it once on the inputs and returns its outputs
// in declared order.
func Run(ctx context.Context, modelPath string, inputs []Tensor, opts Options) ([]Tensor, error) {
	s, err := Load(ctx, modelPath, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Infer(ctx, inputs)
}

// Infer sets the inputs, runs the model once and returns its outputs in
// declared order.
func (s *Session) Infer(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	if err := s.SetInputs(inputs); err != nil {
		return nil, err
	}
	if _, err := s.RunOnce(ctx); err != nil {
		return nil, err
	}
	return s.Outputs()
}

// scalarValue is what every *ort.Scalar[T] implements beyond ort.Value.
type scalarValue interface {
	ort.Value
	scalarValue()
}

type scalar[T ort.TensorData] struct{ *ort.Scalar[T] }

func (scalar[T]) scalarValue() {}

func newScalar(dtype string) (ort.Value, error) {
	mk := func(v ort.Value, err error) (ort.Value, error) { return v, err }
	switch dtype {
	case Float32:
		s, err := ort.NewEmptyScalar[float32]()
		return mk(scalar[float32]{s}, err)
	case Float64:
		s, err := ort.NewEmptyScalar[float64]()
		return mk(scalar[float64]{s}, err)
	case Int64:
		s, err := ort.NewEmptyScalar[int64]()
		return mk(scalar[int64]{s}, err)
	case Int32:
		s, err := ort.NewEmptyScalar[int32]()
		return mk(scalar[int32]{s}, err)
	case Bool:
		s, err := ort.NewEmptyScalar[bool]()
		return mk(scalar[bool]{s}, err)
	case Uint8:
		s, err := ort.NewEmptyScalar[uint8]()
		return mk(scalar[uint8]{s}, err)
	case Int8:
		s, err := ort.NewEmptyScalar[int8]()
		return mk(scalar[int8]{s}, err)
	}
	return nil, fmt.Errorf("scalar of type %s is not supported", dtype)
}

// toValue copies a Tensor into an onnxruntime value.
func toValue(t Tensor) (ort.Value, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if len(t.Shape) == 0 {
		return scalarValueOf(t)
	}
	if t.Len() == 0 {
		return nil, fmt.Errorf("tensor %q: shape %v has no elements, which onnxruntime_go cannot pass", t.Name, t.Shape)
	}
	shape := ort.NewShape(slices.Clone(t.Shape)...)
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, slices.Clone(d))
	case []float64:
		return ort.NewTensor(shape, slices.Clone(d))
	case []int8:
		return ort.NewTensor(shape, slices.Clone(d))
	case []uint8:
		return ort.NewTensor(shape, slices.Clone(d))
	case []int16:
		return ort.NewTensor(shape, slices.Clone(d))
	case []uint16:
		if t.DType == Float16 || t.DType == BFloat16 {
			dt := ort.TensorElementDataType(ort.TensorElementDataTypeFloat16)
			if t.DType == BFloat16 {
				dt = ort.TensorElementDataTypeBFloat16
			}
			b := make([]byte, 2*len(d))
			copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), 2*len(d)))
			return ort.NewCustomDataTensor(shape, b, dt)
		}
		return ort.NewTensor(shape, slices.Clone(d))
	case []int32:
		return ort.NewTensor(shape, slices.Clone(d))
	case []uint32:
		return ort.NewTensor(shape, slices.Clone(d))
	case []int64:
		return ort.NewTensor(shape, slices.Clone(d))
	case []uint64:
		return ort.NewTensor(shape, slices.Clone(d))
	case []bool:
		return ort.NewTensor(shape, slices.Clone(d))
	}
	return nil, fmt.Errorf("tensor %q: unsupported data %T", t.Name, t.Data)
}

func scalarValueOf(t Tensor) (ort.Value, error) {
	switch d := t.Data.(type) {
	case []float32:
		s, err := ort.NewScalar(d[0])
		return scalar[float32]{s}, err
	case []float64:
		s, err := ort.NewScalar(d[0])
		return scalar[float64]{s}, err
	case []int64:
		s, err := ort.NewScalar(d[0])
		return scalar[int64]{s}, err
	case []int32:
		s, err := ort.NewScalar(d[0])
		return scalar[int32]{s}, err
	case []bool:
		s, err := ort.NewScalar(d[0])
		return scalar[bool]{s}, err
	case []uint8:
		s, err := ort.NewScalar(d[0])
		return scalar[uint8]{s}, err
	case []int8:
		s, err := ort.NewScalar(d[0])
		return scalar[int8]{s}, err
	}
	return nil, fmt.Errorf("tensor %q: a scalar of type %s is not supported", t.Name, t.DType)
}

// fromValue copies an onnxruntime value into a Tensor.
func fromValue(name string, v ort.Value) (Tensor, error) {
	if v == nil {
		return Tensor{}, fmt.Errorf("output %q: missing", name)
	}
	shape := slices.Clone([]int64(v.GetShape()))
	t := Tensor{Name: name, Shape: shape}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.DType, t.Data = Float32, slices.Clone(x.GetData())
	case *ort.Tensor[float64]:
		t.DType, t.Data = Float64, slices.Clone(x.GetData())
	case *ort.Tensor[int8]:
		t.DType, t.Data = Int8, slices.Clone(x.GetData())
	case *ort.Tensor[uint8]:
		t.DType, t.Data = Uint8, slices.Clone(x.GetData())
	case *ort.Tensor[int16]:
		t.DType, t.Data = Int16, slices.Clone(x.GetData())
	case *ort.Tensor[uint16]:
		t.DType, t.Data = Uint16, slices.Clone(x.GetData())
	case *ort.Tensor[int32]:
		t.DType, t.Data = Int32, slices.Clone(x.GetData())
	case *ort.Tensor[uint32]:
		t.DType, t.Data = Uint32, slices.Clone(x.GetData())
	case *ort.Tensor[int64]:
		t.DType, t.Data = Int64, slices.Clone(x.GetData())
	case *ort.Tensor[uint64]:
		t.DType, t.Data = Uint64, slices.Clone(x.GetData())
	case *ort.Tensor[bool]:
		t.DType, t.Data = Bool, slices.Clone(x.GetData())
	case *ort.CustomDataTensor:
		dt := ort.TensorElementDataType(x.DataType())
		switch dt {
		case ort.TensorElementDataTypeFloat16:
			t.DType = Float16
		case ort.TensorElementDataTypeBFloat16:
			t.DType = BFloat16
		default:
			return Tensor{}, fmt.Errorf("output %q: type %s is not supported", name, dt)
		}
		b := x.GetData()
		u := make([]uint16, len(b)/2)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(u))), 2*len(u)), b)
		t.Data = u
	case scalar[float32]:
		t.DType, t.Data, t.Shape = Float32, []float32{x.GetData()}, []int64{}
	case scalar[float64]:
		t.DType, t.Data, t.Shape = Float64, []float64{x.GetData()}, []int64{}
	case scalar[int64]:
		t.DType, t.Data, t.Shape = Int64, []int64{x.GetData()}, []int64{}
	case scalar[int32]:
		t.DType, t.Data, t.Shape = Int32, []int32{x.GetData()}, []int64{}
	case scalar[bool]:
		t.DType, t.Data, t.Shape = Bool, []bool{x.GetData()}, []int64{}
	case scalar[uint8]:
		t.DType, t.Data, t.Shape = Uint8, []uint8{x.GetData()}, []int64{}
	case scalar[int8]:
		t.DType, t.Data, t.Shape = Int8, []int8{x.GetData()}, []int64{}
	default:
		return Tensor{}, fmt.Errorf("output %q: %T values are not supported", name, v)
	}
	if err := t.Validate(); err != nil {
		return Tensor{}, fmt.Errorf("output %q: %w", name, err)
	}
	return t, nil
}

func runtimeVersion() string { return ort.GetVersion() }

// availableProviders lists the providers the loaded library offers.
func availableProviders() []string {
	envMu.Lock()
	path := envPath
	envMu.Unlock()
	_, _, available, err := libraryInfo(path)
	if err != nil {
		return nil
	}
	return available
}

// cgoEnabled: this build can load onnxruntime.
const cgoEnabled = true
