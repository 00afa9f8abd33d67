package quantize

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

const msDomain = "com.microsoft"

// rewriter holds the state of one run.
type rewriter struct {
	ctx  context.Context
	m    *onnx.Model
	w    *onnx.Writer
	opts Options
	sum  *Summary
	g    *onnxpb.GraphProto

	names  map[string]bool                               // every value name, to make new ones unique
	consts map[string]*constant                          // constant tensors of the main graph by value name
	uses   map[string]int                                // how often each value name is read, anywhere
	newT   map[*onnxpb.TensorProto]func(io.Writer) error // tensors this run produces
	done   int64
	total  int64
	opset  int64
	extraD map[string]int64 // opset imports to add
	srcOf  map[*onnxpb.TensorProto]*onnxpb.TensorProto
	acts   map[string]actParams // int8-static: quantized activations by name
	actDQ  map[string]string    // ... and their dequantized values

	// Buffers reused from weight to weight, so memory stays at one chunk.
	scratch []byte
	fbuf    []float32
	qbuf    []byte
}

// constant is a constant tensor: a main-graph initializer that is not also
// a graph input, or the value of a Constant node.
type constant struct {
	t    *onnxpb.TensorProto
	node *onnxpb.NodeProto // the Constant node, nil for an initializer
}

func (r *rewriter) run() error {
	r.prepare()
	var err error
	switch r.opts.Mode {
	case ModeFP16:
		if r.opts.FP16WeightsOnly {
			err = r.fp16()
		} else {
			err = r.fp16Compute()
		}
	default:
		err = r.matmuls()
	}
	if err != nil {
		return err
	}
	r.addOutputs()
	r.listInitializers()
	for d, v := range r.extraD {
		if !slices.ContainsFunc(r.m.Proto.OpsetImport, func(o *onnxpb.OperatorSetIdProto) bool { return o.GetDomain() == d }) {
			r.m.Proto.OpsetImport = append(r.m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(d), Version: proto.Int64(v)})
		}
	}
	return r.write()
}

// prepare indexes the graph: names, uses, constants and the opset.
func (r *rewriter) prepare() {
	r.g = r.m.Graph()
	r.names, r.uses = map[string]bool{}, map[string]int{}
	r.consts = map[string]*constant{}
	r.newT = map[*onnxpb.TensorProto]func(io.Writer) error{}
	r.extraD = map[string]int64{}
	r.srcOf = map[*onnxpb.TensorProto]*onnxpb.TensorProto{}
	r.acts, r.actDQ = map[string]actParams{}, map[string]string{}
	for _, op := range r.m.Proto.GetOpsetImport() {
		if d := op.GetDomain(); d == "" || d == "ai.onnx" {
			r.opset = op.GetVersion()
		}
	}
	r.scan(r.g)
	// Progress counts the bytes of tensor data read from disk.
	_ = onnx.WalkTensors(r.m.Proto, func(t *onnxpb.TensorProto) error {
		if _, lazy := r.m.Embedded[t]; lazy || onnx.IsExternal(t) {
			if n, err := onnx.ByteSize(t); err == nil {
				r.total += n
			}
		}
		return nil
	})
	for _, o := range r.g.GetOutput() {
		r.uses[o.GetName()]++
	}
	inputs := map[string]bool{}
	for _, in := range r.g.GetInput() {
		inputs[in.GetName()] = true
	}
	for _, t := range r.g.GetInitializer() {
		// IR < 4 lists every initializer as a graph input; only from IR 4
		// on does a listed one mean "overridable, not a constant".
		if !inputs[t.GetName()] || r.m.Proto.GetIrVersion() < 4 {
			r.consts[t.GetName()] = &constant{t: t}
		}
	}
	for _, n := range r.g.GetNode() {
		if n.GetOpType() == "Constant" && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx") && len(n.GetOutput()) == 1 {
			for _, a := range n.GetAttribute() {
				if a.GetName() == "value" && a.GetT() != nil {
					r.consts[n.GetOutput()[0]] = &constant{t: a.GetT(), node: n}
				}
			}
		}
	}
}

// addOutputs makes the values ExtraOutputs names graph outputs (float
// tensors of any shape), for calibration to read.
func (r *rewriter) addOutputs() {
	have := map[string]bool{}
	for _, o := range r.g.GetOutput() {
		have[o.GetName()] = true
	}
	for _, name := range r.opts.ExtraOutputs {
		if have[name] {
			continue
		}
		have[name] = true
		r.g.Output = append(r.g.Output, &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(onnx.Float)}}}})
	}
}

// scan records every name a graph (and its subgraphs) defines or reads.
func (r *rewriter) scan(g *onnxpb.GraphProto) {
	for _, v := range g.GetInput() {
		r.names[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		r.names[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		r.names[n.GetName()] = true
		for _, in := range n.GetInput() {
			r.names[in] = true
			r.uses[in]++
		}
		for _, o := range n.GetOutput() {
			r.names[o] = true
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil {
				r.scan(a.GetG())
				// A subgraph reads outer names as implicit inputs; its own
				// outputs count as uses too.
				for _, o := range a.GetG().GetOutput() {
					r.uses[o.GetName()]++
				}
			}
			for _, sg := range a.GetGraphs() {
				r.scan(sg)
				for _, o := range sg.GetOutput() {
					r.uses[o.GetName()]++
				}
			}
		}
	}
}

// unique returns base, or base with a numeric suffix, unused so far.
func (r *rewriter) unique(base string) string {
	name := base
	for i := 1; r.names[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	r.names[name] = true
	return name
}

// write streams every tensor into the output: the ones this run produces
// and, byte for byte, every other one whose data is on disk.
func (r *rewriter) write() error {
	written := map[*onnxpb.TensorProto]bool{}
	inits := r.g.GetInitializer()
	for i, t := range inits {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		// Let the disk read the next tensor while this one is processed.
		for _, next := range inits[i+1:] {
			if src := r.source(next); src != nil {
				r.m.Prefetch(src)
				break
			}
		}
		written[t] = true
		if fill, ok := r.newT[t]; ok {
			size, err := onnx.ByteSize(t)
			if err != nil {
				return err
			}
			if err := r.w.Tensor(t, size, fill); err != nil {
				return err
			}
			continue
		}
		_, lazy := r.m.Embedded[t]
		if !lazy && !onnx.IsExternal(t) {
			continue
		}
		d, err := r.m.TensorData(t)
		if err != nil {
			return err
		}
		err = r.w.CopyTensor(t, d)
		d.Close()
		if err != nil {
			return err
		}
		delete(r.m.Embedded, t)
		r.progress(d.Size)
	}
	// What is left on disk is in subgraphs and attributes.
	return r.w.Relocate(r.m, func(t *onnxpb.TensorProto) bool { return written[t] })
}

func (r *rewriter) progress(n int64) {
	r.done += n
	if r.opts.Progress != nil {
		r.opts.Progress(r.done, max(r.total, r.done))
	}
}

func (r *rewriter) skip(n *onnxpb.NodeProto, format string, args ...any) {
	r.sum.Skipped = append(r.sum.Skipped, Skip{Node: n.GetName(), OpType: n.GetOpType(), Reason: fmt.Sprintf(format, args...)})
}

// weightData opens a constant's bytes.
func (r *rewriter) weightData(c *constant) (*onnx.Data, error) {
	return r.m.TensorData(c.t)
}

// dropConstant removes a constant whose every use was rewritten: the
// initializer, or the Constant node and its value_info.
func (r *rewriter) dropConstant(name string) {
	c := r.consts[name]
	if c.node == nil {
		r.g.Initializer = slices.DeleteFunc(r.g.Initializer, func(t *onnxpb.TensorProto) bool { return t == c.t })
	} else {
		r.g.Node = slices.DeleteFunc(r.g.Node, func(n *onnxpb.NodeProto) bool { return n == c.node })
	}
	// m.Embedded keeps c.t: its data is still read to quantize it.
	r.g.ValueInfo = slices.DeleteFunc(r.g.ValueInfo, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == name })
	if c.node == nil {
		r.g.Input = slices.DeleteFunc(r.g.Input, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == name })
	}
}

// listInitializers adds new initializers to the graph inputs, as IR < 4
// requires of every initializer.
func (r *rewriter) listInitializers() {
	if r.m.Proto.GetIrVersion() >= 4 {
		return
	}
	listed := map[string]bool{}
	for _, v := range r.g.GetInput() {
		listed[v.GetName()] = true
	}
	for _, t := range r.g.GetInitializer() {
		if listed[t.GetName()] {
			continue
		}
		shape := &onnxpb.TensorShapeProto{}
		for _, d := range t.GetDims() {
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		r.g.Input = append(r.g.Input, &onnxpb.ValueInfoProto{Name: proto.String(t.GetName()), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(t.GetDataType()), Shape: shape}}}})
	}
}

// source is the input tensor whose on-disk data t is made from: itself
// when passed through, the weight when quantized; nil when in memory.
func (r *rewriter) source(t *onnxpb.TensorProto) *onnxpb.TensorProto {
	if c, ok := r.srcOf[t]; ok {
		t = c
	}
	if _, lazy := r.m.Embedded[t]; lazy || onnx.IsExternal(t) {
		return t
	}
	return nil
}

// addInit adds an initializer that fill produces when the data is written.
func (r *rewriter) addInit(name string, dataType int32, dims []int64, fill func(io.Writer) error) *onnxpb.TensorProto {
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(dataType), Dims: dims}
	r.g.Initializer = append(r.g.Initializer, t)
	r.newT[t] = fill
	if n, err := onnx.ByteSize(t); err == nil {
		r.sum.OutputDataBytes += n
	}
	return t
}

func node(op, domain, name string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: out, Attribute: attrs}
	if domain != "" {
		n.Domain = proto.String(domain)
	}
	return n
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func attrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
}

// baseName is a readable prefix for the nodes replacing n.
func baseName(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return strings.Join(n.GetOutput(), "_")
}
