// Package quantize rewrites ONNX models to INT8, FP16 or INT4 weights,
// tensor by tensor: weights are streamed from disk in bounded chunks and the
// output data file is written in order, so memory does not grow with the
// model. Whatever is not quantized passes through byte for byte.
package quantize

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Mode is the target precision.
type Mode string

const (
	ModeInt8 Mode = "int8" // dynamic: DynamicQuantizeLinear → MatMulInteger
	ModeFP16 Mode = "fp16" // float16 weights
	ModeInt4 Mode = "int4" // com.microsoft.MatMulNBits, block-wise
	// ModeInt8Static: int8 weights and activations whose ranges were
	// calibrated beforehand (Options.Activations; quantize/auto measures
	// them), so no range is computed at run time.
	ModeInt8Static Mode = "int8-static"
)

// Static int8 graph forms.
const (
	// FormQDQ: QuantizeLinear → DequantizeLinear pairs around a float
	// MatMul, which onnxruntime fuses into its integer kernels.
	FormQDQ = "qdq"
	// FormQLinear: QuantizeLinear → QLinearMatMul → DequantizeLinear, with
	// the output's calibrated range too (MatMul nodes and Gemm without
	// alpha or C; the others take the QDQ form).
	FormQLinear = "qlinear"
)

// DefaultStaticForm is the static form onnxruntime's CPU provider ran
// faster (docs/quantize.md).
var DefaultStaticForm = FormQDQ

// Range is a calibrated range of an activation.
type Range struct{ Min, Max float32 }

// Options select what is quantized and how. The zero value of each field
// is a sensible default (see DefaultOptions).
type Options struct {
	Mode       Mode
	PerChannel bool // int8: one scale per output column instead of one per tensor
	// The default int8 weights are portable: full range wherever that is
	// exact on CPUs without VNNI, narrowed just enough elsewhere (see
	// portable.go). ReduceRange uses 7 bits everywhere; FullRange uses
	// ±127 everywhere, and the model then needs VNNI (or ARM).
	ReduceRange bool
	FullRange   bool
	Uint8       bool // int8: uint8 (asymmetric) weights instead of int8 (symmetric)
	BlockSize   int  // int4: 16, 32, 64, 128 or 256 (default 32)
	Symmetric   bool // int4: no zero points (zero point 8)
	// FP16WeightsOnly: fp16 stores weights as float16 but computes in
	// float32 (a Cast after each weight) instead of converting the graph.
	FP16WeightsOnly bool

	OpTypes        []string // node types to quantize (default MatMul and Gemm)
	ExcludeOpTypes []string
	Nodes          []string // when set, only these node names
	ExcludeNodes   []string
	MinWeightElems int64 // weights with fewer elements stay FP32
	// CostModel decides which int8/int4 nodes stay in float because the
	// integer kernel does not pay on a CPU (see costmodel.go); CostModelOff
	// quantizes every candidate node.
	CostModel CostModel
	// AccuracyLevel is MatMulNBits' accuracy_level for int4 (the precision
	// of its activations: 4 = int8, which lets onnxruntime use its integer
	// kernels); 0 picks DefaultAccuracyLevel, -1 writes none.
	AccuracyLevel int

	// Activations are, for int8-static, the calibrated ranges by value name
	// (the A input of each quantized node; for FormQLinear its output too);
	// a node whose A has none is quantized dynamically.
	Activations map[string]Range
	// Form is int8-static's graph form (default DefaultStaticForm).
	Form string
	// Calibration names how Activations were measured, for the metadata.
	Calibration string
	// NodeModes overrides Mode (int8 or int4) for the weights of the named
	// nodes: a searched plan mixes them.
	NodeModes map[string]Mode
	// Notes are extra metadata entries, under the quantization prefix
	// (a searched plan records itself here).
	Notes map[string]string
	// ExtraOutputs are value names made graph outputs, so that a run of
	// the model returns them (calibration reads activations this way).
	ExtraOutputs []string

	// ChunkBytes bounds the FP32 bytes of one weight chunk in memory
	// (default 64 MiB); peak memory is a small multiple of it.
	ChunkBytes int64
	// Progress, when set, is called with bytes of weights processed so far
	// and their total.
	Progress func(done, total int64)
}

// Summary reports what a run did.
type Summary struct {
	Mode            Mode
	Quantized       []string // weights quantized
	Skipped         []Skip   // candidate nodes left as they were, and why
	InputBytes      int64    // .onnx plus its data files
	OutputBytes     int64
	InputDataBytes  int64 // bytes of tensors quantized, before
	OutputDataBytes int64 // ... and after
	Duration        time.Duration

	// Int8 weights: the range scheme ("portable", "reduced" or "full"),
	// the weights whose scale portable widened (Narrowed), the weights
	// with pairs a CPU without VNNI computes wrong (NeedsVNNI, full range
	// only), and what the model therefore requires of the CPU (a
	// manifests.CPURequirement; "" for any).
	WeightRange string
	Narrowed    []string
	NeedsVNNI   []string
	RequiresCPU string
	// PairsAdjusted counts int8 weight pairs that portable moved back
	// within the bound after rounding (expected 0).
	PairsAdjusted int64
}

// Range is the int8 weight range scheme these options select.
func (o Options) Range() string {
	switch {
	case o.Mode != ModeInt8 && o.Mode != ModeInt8Static && o.Mode != "":
		return ""
	case o.ReduceRange:
		return RangeReduced
	case o.FullRange:
		return RangeFull
	}
	return RangePortable
}

// Int8 weight range schemes.
const (
	RangePortable = "portable"
	RangeReduced  = "reduced"
	RangeFull     = "full"
)

// Skip is a node that was not quantized.
type Skip struct {
	Node, OpType, Reason string
}

// Quantize reads the model at in and writes the quantized model to out
// (and out's data file, out + ".data").
func Quantize(ctx context.Context, in, out string, opts Options) (*Summary, error) {
	start := time.Now()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := onnx.Open(in)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	inBytes, err := modelBytes(m)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	w, err := onnx.Create(out)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	defer w.Abort()
	r := &rewriter{ctx: ctx, m: m, w: w, opts: opts, sum: &Summary{Mode: opts.Mode, InputBytes: inBytes, WeightRange: opts.Range()}}
	if err := r.run(); err != nil {
		return nil, fmt.Errorf("quantize %s: %w", in, err)
	}
	if len(r.sum.NeedsVNNI) > 0 {
		r.sum.RequiresCPU = manifests.RequireVNNI
	}
	setMetadata(m.Proto, Metadata(opts, r.sum))
	if err := w.Commit(m.Proto); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if r.sum.OutputBytes, err = fileSizes(out, out+".data"); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	r.sum.Duration = time.Since(start)
	return r.sum, nil
}

func (o *Options) validate() error {
	switch o.Mode {
	case ModeInt8, ModeFP16, ModeInt4:
	case ModeInt8Static:
		if o.Form == "" {
			o.Form = DefaultStaticForm
		}
		if o.Form != FormQDQ && o.Form != FormQLinear {
			return fmt.Errorf("quantize: static form %q: want %s or %s", o.Form, FormQDQ, FormQLinear)
		}
		if o.PerChannel {
			// Measured: onnxruntime 1.30 does not fuse per-channel QDQ
			// weights and dequantizes them at every call (0.07x FP32).
			return fmt.Errorf("quantize: int8-static takes per-tensor weights (onnxruntime's CPU provider dequantizes per-channel ones at every call): drop --per-channel")
		}
	case "":
		o.Mode = ModeInt8
	default:
		return fmt.Errorf("quantize: mode %q: want int8, fp16 or int4 (or int8-static, with calibration)", o.Mode)
	}
	if o.ReduceRange && o.FullRange {
		return fmt.Errorf("quantize: --reduce-range and --full-range exclude each other")
	}
	if o.BlockSize == 0 {
		o.BlockSize = 32
	}
	if o.BlockSize < 16 || o.BlockSize > 256 || o.BlockSize&(o.BlockSize-1) != 0 {
		return fmt.Errorf("quantize: block size %d: want a power of two from 16 to 256", o.BlockSize)
	}
	if len(o.OpTypes) == 0 {
		o.OpTypes = []string{"MatMul", "Gemm"}
	}
	for _, t := range o.OpTypes {
		if t != "MatMul" && t != "Gemm" {
			return fmt.Errorf("quantize: op type %q: only MatMul and Gemm weights are quantized", t)
		}
	}
	switch o.CostModel {
	case "":
		o.CostModel = CostModelCPU
	case CostModelCPU, CostModelOff:
	default:
		return fmt.Errorf("quantize: cost model %q: want %q or %q", o.CostModel, CostModelCPU, CostModelOff)
	}
	switch {
	case o.AccuracyLevel == 0:
		o.AccuracyLevel = DefaultAccuracyLevel
	case o.AccuracyLevel < -1 || o.AccuracyLevel > 4:
		return fmt.Errorf("quantize: accuracy level %d: want 1 to 4 (or -1 for none)", o.AccuracyLevel)
	}
	for n, m := range o.NodeModes {
		if m != ModeInt8 && m != ModeInt4 {
			return fmt.Errorf("quantize: node %s: mode %q: a node can be int8 or int4", n, m)
		}
		if o.Mode != ModeInt8 && o.Mode != ModeInt4 {
			return fmt.Errorf("quantize: per-node modes need mode int8 or int4, not %s", o.Mode)
		}
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 64 << 20
	}
	return nil
}

func modelBytes(m *onnx.Model) (int64, error) {
	files, err := m.DataFiles()
	if err != nil {
		return 0, err
	}
	paths := []string{m.Path}
	for _, f := range files {
		paths = append(paths, filepath.Join(m.Dir, filepath.FromSlash(f.Path)))
	}
	return fileSizes(paths...)
}

func fileSizes(paths ...string) (int64, error) {
	var n int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if os.IsNotExist(err) && p != paths[0] {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += st.Size()
	}
	return n, nil
}

// wanted applies the include/exclude options to a node.
func (o *Options) wanted(n *onnxpb.NodeProto) (bool, string) {
	switch {
	case !slices.Contains(o.OpTypes, n.GetOpType()) || slices.Contains(o.ExcludeOpTypes, n.GetOpType()):
		return false, "op type excluded"
	case len(o.Nodes) > 0 && !slices.Contains(o.Nodes, n.GetName()):
		return false, "node not in --nodes"
	case slices.Contains(o.ExcludeNodes, n.GetName()):
		return false, "node excluded"
	}
	return true, ""
}
