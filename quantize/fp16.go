package quantize

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// fp16MinElems: smaller float constants (scalars, epsilons) stay FP32; a
// Cast node costs more than they save.
const fp16MinElems = 16

// fp16 stores every float constant of the main graph (initializers and
// Constant nodes) as float16, followed by a Cast back to float32 under the
// original name, so no consumer changes, subgraphs see the same float32
// values, and graph inputs and outputs stay float32. Compute stays float32
// (onnxruntime folds the Casts at load); the file is half.
func (r *rewriter) fp16() error {
	var casts []*onnxpb.NodeProto
	minElems := max(r.opts.MinWeightElems, fp16MinElems)
	eligible := func(t *onnxpb.TensorProto) bool {
		n, err := onnx.NumElements(t.GetDims())
		return err == nil && t.GetDataType() == onnx.Float && n >= minElems
	}
	for _, t := range append([]*onnxpb.TensorProto(nil), r.g.GetInitializer()...) {
		name := t.GetName()
		if r.consts[name] == nil || r.consts[name].node != nil || !eligible(t) {
			continue
		}
		c := r.consts[name]
		half := r.unique(name + "_fp16")
		src := *c
		r.srcOf[r.addInit(half, onnx.Float16, t.GetDims(), func(out io.Writer) error { return r.writeHalf(&src, out) })] = t
		r.sum.InputDataBytes += 4 * elems(t)
		casts = append(casts, node("Cast", "", r.unique(name+"_cast"), []string{half}, []string{name}, intAttr("to", int64(onnx.Float))))
		r.sum.Quantized = append(r.sum.Quantized, name)
		r.dropConstant(name)
	}
	var nodes []*onnxpb.NodeProto
	for _, n := range r.g.GetNode() {
		nodes = append(nodes, n)
		c := r.consts[firstOutput(n)]
		if c == nil || c.node != n || !eligible(c.t) {
			continue
		}
		name := firstOutput(n)
		// Constant values are small and already in memory.
		d, err := r.m.TensorData(c.t)
		if err != nil {
			return err
		}
		b := make([]byte, d.Size)
		_, err = d.ReadAt(b, 0)
		d.Close()
		if err != nil {
			return fmt.Errorf("constant %q: %w", name, err)
		}
		h := make([]byte, d.Size/2)
		halve(h, b)
		ht := &onnxpb.TensorProto{Name: c.t.Name, DataType: proto.Int32(onnx.Float16), Dims: c.t.GetDims(), RawData: h}
		for _, a := range n.GetAttribute() {
			if a.GetName() == "value" {
				a.T = ht
			}
		}
		half := r.unique(name + "_fp16")
		n.Output[0] = half
		nodes = append(nodes, node("Cast", "", r.unique(name+"_cast"), []string{half}, []string{name}, intAttr("to", int64(onnx.Float))))
		r.sum.Quantized = append(r.sum.Quantized, name)
		r.sum.InputDataBytes += d.Size
		r.sum.OutputDataBytes += d.Size / 2
	}
	r.g.Node = append(casts, nodes...)
	return nil
}

func firstOutput(n *onnxpb.NodeProto) string {
	if len(n.GetOutput()) == 0 {
		return ""
	}
	return n.GetOutput()[0]
}

func elems(t *onnxpb.TensorProto) int64 {
	n, _ := onnx.NumElements(t.GetDims())
	return n
}

// writeHalf streams a float32 tensor as float16, 1 MiB at a time.
func (r *rewriter) writeHalf(c *constant, out io.Writer) error {
	d, err := r.weightData(c)
	if err != nil {
		return err
	}
	defer d.Close()
	in := make([]byte, min(d.Size, 1<<20))
	h := make([]byte, len(in)/2)
	for off := int64(0); off < d.Size; {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(in)), d.Size-off)
		if _, err := d.ReadAt(in[:n], off); err != nil {
			return fmt.Errorf("tensor %q: %w", c.t.GetName(), err)
		}
		halve(h[:n/2], in[:n])
		if _, err := out.Write(h[:n/2]); err != nil {
			return err
		}
		off += n
		r.progress(n)
	}
	return nil
}

func halve(dst, src []byte) {
	for i := 0; i < len(dst)/2; i++ {
		f := math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		binary.LittleEndian.PutUint16(dst[2*i:], onnx.Float32ToFloat16(f))
	}
}
