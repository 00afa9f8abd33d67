package quantize

import (
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// fp16Ops lists the operators whose computation moves to float16, with the
// input positions of type T (the float inputs) and how many leading outputs
// are T. Everything else keeps float32 inputs: values cross the boundary
// through Cast nodes. onnxruntime runs a float16 node on a provider without
// a float16 kernel by inserting Casts itself.
var fp16Ops = map[string]struct {
	in   []int // T input positions; nil means all
	outs int
}{
	"Add": {nil, 1}, "Sub": {nil, 1}, "Mul": {nil, 1}, "Div": {nil, 1}, "Sum": {nil, 1},
	"Max": {nil, 1}, "Min": {nil, 1}, "Concat": {nil, 1},
	"MatMul": {[]int{0, 1}, 1}, "Gemm": {[]int{0, 1, 2}, 1}, "Conv": {[]int{0, 1, 2}, 1},
	"LayerNormalization": {[]int{0, 1, 2}, 1}, "BatchNormalization": {[]int{0, 1, 2, 3, 4}, 1},
	"Relu": {[]int{0}, 1}, "Sigmoid": {[]int{0}, 1}, "Tanh": {[]int{0}, 1}, "Softmax": {[]int{0}, 1},
	"Erf": {[]int{0}, 1}, "Sqrt": {[]int{0}, 1}, "Exp": {[]int{0}, 1}, "Neg": {[]int{0}, 1},
	"Abs": {[]int{0}, 1}, "Reciprocal": {[]int{0}, 1}, "HardSigmoid": {[]int{0}, 1},
	"LeakyRelu": {[]int{0}, 1}, "Clip": {[]int{0, 1, 2}, 1}, "Pow": {[]int{0, 1}, 1},
	"Transpose": {[]int{0}, 1}, "Identity": {[]int{0}, 1}, "Flatten": {[]int{0}, 1},
	"Reshape": {[]int{0}, 1}, "Squeeze": {[]int{0}, 1}, "Unsqueeze": {[]int{0}, 1},
	"Slice": {[]int{0}, 1}, "Gather": {[]int{0}, 1}, "Expand": {[]int{0}, 1}, "Tile": {[]int{0}, 1},
	"ReduceMean": {[]int{0}, 1}, "ReduceSum": {[]int{0}, 1},
	"GlobalAveragePool": {[]int{0}, 1}, "AveragePool": {[]int{0}, 1}, "MaxPool": {[]int{0}, 1},
}

// fp16Compute converts the main graph to float16: every float constant is
// stored as float16 and the operators of fp16Ops compute in float16. A
// converted value v is renamed v_fp16; wherever float32 is still needed
// (other operators, subgraphs, graph outputs) a Cast recreates v under its
// own name, so graph inputs and outputs and subgraphs stay float32.
func (r *rewriter) fp16Compute() error {
	half := map[string]string{}   // value -> name of its float16 version
	single := map[string]bool{}   // values whose float32 version exists
	float32s := map[string]bool{} // values known to be float32
	var head, body []*onnxpb.NodeProto
	castTo := func(to int32, in, out string) *onnxpb.NodeProto {
		return node("Cast", "", r.unique(out+"_cast"), []string{in}, []string{out}, intAttr("to", int64(to)))
	}
	for _, v := range r.g.GetInput() {
		if v.GetType().GetTensorType().GetElemType() == onnx.Float {
			float32s[v.GetName()], single[v.GetName()] = true, true
		}
	}
	for _, t := range append([]*onnxpb.TensorProto(nil), r.g.GetInitializer()...) {
		name := t.GetName()
		if r.consts[name] == nil || r.consts[name].node != nil || t.GetDataType() != onnx.Float {
			continue
		}
		h := r.unique(name + "_fp16")
		src := *r.consts[name]
		r.srcOf[r.addInit(h, onnx.Float16, t.GetDims(), func(out io.Writer) error { return r.writeHalf(&src, out) })] = t
		r.sum.InputDataBytes += 4 * elems(t)
		r.sum.Quantized = append(r.sum.Quantized, name)
		r.dropConstant(name)
		half[name] = h
	}
	// needHalf returns the float16 name of v, adding a Cast from float32
	// before the current node when v is a float32 value.
	needHalf := func(v string) string {
		if h, ok := half[v]; ok {
			return h
		}
		h := r.unique(v + "_fp16")
		body = append(body, castTo(onnx.Float16, v, h))
		half[v] = h
		return h
	}
	// needSingle makes v's float32 version exist; initializers' Casts go
	// first, since a subgraph may read them anywhere.
	needSingle := func(v string) {
		if single[v] || half[v] == "" {
			return
		}
		c := castTo(onnx.Float, half[v], v)
		if r.isHalfInit(half[v]) {
			head = append(head, c)
		} else {
			body = append(body, c)
		}
		single[v] = true
	}
	for _, n := range r.g.GetNode() {
		op, ins := n.GetOpType(), n.GetInput()
		spec, ok := fp16Ops[op]
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			ok = false
		}
		tpos := spec.in
		if ok && tpos == nil {
			for i := range ins {
				tpos = append(tpos, i)
			}
		}
		convert := ok && len(n.GetOutput()) >= spec.outs
		for _, i := range tpos {
			if i < len(ins) && ins[i] != "" && half[ins[i]] == "" && !float32s[ins[i]] {
				convert = false // an input of unknown type: leave the node alone
			}
		}
		switch {
		case op == "Constant" && r.consts[firstOutput(n)] != nil && r.consts[firstOutput(n)].node == n &&
			r.consts[firstOutput(n)].t.GetDataType() == onnx.Float:
			if err := r.halveConstant(n); err != nil {
				return err
			}
			o := firstOutput(n)
			half[o] = r.unique(o + "_fp16")
			n.Output[0] = half[o]
			body = append(body, n)
			continue
		case op == "Cast" && attrInt(n, "to", 0) == int64(onnx.Float) && len(n.GetOutput()) == 1:
			for _, a := range n.GetAttribute() {
				if a.GetName() == "to" {
					a.I = proto.Int64(int64(onnx.Float16))
				}
			}
			if len(ins) == 1 && half[ins[0]] != "" {
				n.Input[0] = half[ins[0]]
			}
			o := n.GetOutput()[0]
			half[o] = r.unique(o + "_fp16")
			n.Output[0] = half[o]
			body = append(body, n)
			continue
		case convert:
			for _, i := range tpos {
				if i < len(ins) && ins[i] != "" {
					n.Input[i] = needHalf(ins[i])
				}
			}
			for i := 0; i < spec.outs; i++ {
				o := n.GetOutput()[i]
				if o == "" {
					continue
				}
				half[o] = r.unique(o + "_fp16")
				n.Output[i] = half[o]
			}
			body = append(body, n)
			continue
		}
		// A float32 node (or one with subgraphs): give it float32 inputs,
		// including the outer values its subgraphs read.
		for _, v := range append(append([]string(nil), ins...), subgraphReads(n)...) {
			needSingle(v)
		}
		body = append(body, n)
	}
	for _, o := range r.g.GetOutput() {
		needSingle(o.GetName())
	}
	// value_info of renamed values no longer names anything.
	var vi []*onnxpb.ValueInfoProto
	for _, v := range r.g.GetValueInfo() {
		if half[v.GetName()] == "" || single[v.GetName()] {
			vi = append(vi, v)
		}
	}
	r.g.ValueInfo = vi
	r.g.Node = append(head, body...)
	return nil
}

func (r *rewriter) isHalfInit(name string) bool {
	for _, t := range r.g.GetInitializer() {
		if t.GetName() == name {
			return true
		}
	}
	return false
}

// halveConstant stores a float Constant node's value as float16.
func (r *rewriter) halveConstant(n *onnxpb.NodeProto) error {
	c := r.consts[firstOutput(n)]
	d, err := r.m.TensorData(c.t)
	if err != nil {
		return err
	}
	defer d.Close()
	b := make([]byte, d.Size)
	if _, err := d.ReadAt(b, 0); err != nil && d.Size > 0 {
		return fmt.Errorf("constant %q: %w", firstOutput(n), err)
	}
	h := make([]byte, d.Size/2)
	halve(h, b)
	for _, a := range n.GetAttribute() {
		if a.GetName() == "value" {
			a.T = &onnxpb.TensorProto{Name: c.t.Name, DataType: proto.Int32(onnx.Float16), Dims: c.t.GetDims(), RawData: h}
		}
	}
	r.sum.Quantized = append(r.sum.Quantized, firstOutput(n))
	r.sum.InputDataBytes += d.Size
	r.sum.OutputDataBytes += d.Size / 2
	return nil
}

// subgraphReads lists every name the subgraphs of n read: a superset of
// the outer values they capture, which is all that matters here.
func subgraphReads(n *onnxpb.NodeProto) []string {
	var names []string
	var walk func(g *onnxpb.GraphProto)
	walk = func(g *onnxpb.GraphProto) {
		for _, sn := range g.GetNode() {
			names = append(names, sn.GetInput()...)
			for _, a := range sn.GetAttribute() {
				if a.GetG() != nil {
					walk(a.GetG())
				}
				for _, sg := range a.GetGraphs() {
					walk(sg)
				}
			}
		}
		for _, o := range g.GetOutput() {
			names = append(names, o.GetName())
		}
	}
	for _, a := range n.GetAttribute() {
		if a.GetG() != nil {
			walk(a.GetG())
		}
		for _, sg := range a.GetGraphs() {
			walk(sg)
		}
	}
	return names
}
