//go:build cgo

package bench_test

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
)

// gemmModel writes a model exercising every Gemm and MatMul form the
// rewriter handles: alpha and beta, transB, a bias C, a 3-D MatMul input,
// and a weight shared by two MatMuls.
func gemmModel(t *testing.T, dir string, opset, ir int64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	w, err := onnx.Create(filepath.Join(dir, "gemm.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var inits []*onnxpb.TensorProto
	tensor := func(name string, dims ...int64) string {
		tp := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(onnx.Float), Dims: dims}
		n, _ := onnx.ByteSize(tp)
		if err := w.Tensor(tp, n, func(out io.Writer) error {
			b := make([]byte, n)
			for i := 0; i < len(b); i += 4 {
				binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(rng.NormFloat64())*0.2))
			}
			_, err := out.Write(b)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		inits = append(inits, tp)
		return name
	}
	f := func(name string, v float32) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
	}
	i := func(name string, v int64) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
	}
	nd := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out), Input: in, Output: []string{out}, Attribute: attrs}
	}
	vi := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		s := &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(onnx.Float), Shape: s}}}}
	}
	g2in := []string{"r1", tensor("w2", 80, 96)}
	if opset < 11 { // C is optional from opset 11
		g2in = append(g2in, tensor("c2", 80))
	}
	nodes := []*onnxpb.NodeProto{
		nd("Gemm", []string{"x", tensor("w1", 64, 96), tensor("c1", 96)}, "g1", f("alpha", 0.5), f("beta", 2)),
		nd("Relu", []string{"g1"}, "r1"),
		nd("Gemm", g2in, "g2", i("transB", 1)), // B is [N, K]
		nd("Reshape", []string{"g2", "shape"}, "r3"),
		nd("MatMul", []string{"r3", tensor("w3", 40, 48)}, "m3"), // 3-D A
		nd("MatMul", []string{"m3", tensor("shared", 48, 48)}, "m4"),
		nd("MatMul", []string{"m4", "shared"}, "y"),
	}
	shape := &onnxpb.TensorProto{Name: proto.String("shape"), DataType: proto.Int32(onnx.Int64), Dims: []int64{3}, Int64Data: []int64{4, 2, 40}}
	inits = append(inits, shape)
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(ir),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("gemm"), Node: nodes, Initializer: inits,
			Input: []*onnxpb.ValueInfoProto{vi("x", 4, 64)}, Output: []*onnxpb.ValueInfoProto{vi("y", 4, 2, 48)},
		},
	}
	if ir < 4 { // every initializer is a graph input too
		for _, t := range inits {
			v := vi(t.GetName(), t.GetDims()...)
			v.Type.GetTensorType().ElemType = proto.Int32(t.GetDataType())
			m.Graph.Input = append(m.Graph.Input, v)
		}
	}
	if err := w.Commit(m); err != nil {
		t.Fatal(err)
	}
	return w.Path()
}

func TestQuantizeGemmForms(t *testing.T) {
	for _, v := range []struct{ opset, ir int64 }{{9, 7}, {13, 7}, {8, 3}} {
		opset := v.opset
		fp32 := gemmModel(t, t.TempDir(), opset, v.ir)
		onnxtest.Check(t, fp32)
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "q.onnx")
				sum, err := quantize.Quantize(context.Background(), fp32, out, m.opts)
				if err != nil {
					t.Fatal(err)
				}
				want := 4 // w1, w2, w3, shared
				if m.opts.Mode == quantize.ModeFP16 {
					want = 5 // every float initializer of 16 elements or more
					if opset < 11 {
						want = 6
					}
				}
				if len(sum.Quantized) != want {
					t.Fatalf("quantized %v, want %d", sum.Quantized, want)
				}
				onnxtest.Check(t, out)
				cos := runBoth(t, fp32, out, nil)
				t.Logf("opset %d IR %d %s: cosine %.6f", opset, v.ir, m.name, cos)
				if cos < m.minCosine {
					t.Errorf("cosine %.6f, want >= %v", cos, m.minCosine)
				}
			})
		}
	}
}
