package bench

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Small models built in test code, so the package's tests need no fixture
// files: a classifier with external data, a model with int64 and scalar
// inputs, and one with a float16 output.

func dim(v any) *onnxpb.TensorShapeProto_Dimension {
	switch x := v.(type) {
	case int:
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(x)}}
	case string:
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: x}}
	}
	return &onnxpb.TensorShapeProto_Dimension{}
}

func valueInfo(name string, dt onnxpb.TensorProto_DataType, dims ...any) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, dim(d))
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(dt)), Shape: shape,
		}}},
	}
}

func node(op string, in []string, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func writeModel(t testing.TB, path string, g *onnxpb.GraphProto, opset int64) string {
	t.Helper()
	m := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("bench-test"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:        g,
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// classifierWeights are W (8×4) and B (4) of the test classifier.
func classifierWeights(scale float32) ([]float32, []float32) {
	w := make([]float32, 32)
	for i := range w {
		w[i] = scale * float32(math.Sin(float64(i)*0.7))
	}
	return w, []float32{0.1, -0.2, 0.3, 0}
}

// writeClassifier writes x[batch,8] → MatMul W → Add B → logits[batch,4] →
// Softmax → probs[batch,4], with W in an external data file. scale
// multiplies the weights (a "broken" copy of the model).
func writeClassifier(t testing.TB, dir string, scale float32) string {
	t.Helper()
	w, b := classifierWeights(scale)
	if err := os.WriteFile(filepath.Join(dir, "classifier.onnx.data"), floatBytes(w), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &onnxpb.GraphProto{
		Name: proto.String("classifier"),
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "W"}, []string{"xw"}),
			node("Add", []string{"xw", "B"}, []string{"logits"}),
			node("Softmax", []string{"logits"}, []string{"probs"}, intAttr("axis", -1)),
		},
		Initializer: []*onnxpb.TensorProto{
			{
				Name: proto.String("W"), Dims: []int64{8, 4}, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
				DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
				ExternalData: []*onnxpb.StringStringEntryProto{
					{Key: proto.String("location"), Value: proto.String("classifier.onnx.data")},
					{Key: proto.String("offset"), Value: proto.String("0")},
					{Key: proto.String("length"), Value: proto.String("128")},
				},
			},
			{Name: proto.String("B"), Dims: []int64{4}, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), RawData: floatBytes(b)},
		},
		Input:  []*onnxpb.ValueInfoProto{valueInfo("x", onnxpb.TensorProto_FLOAT, "batch", 8)},
		Output: []*onnxpb.ValueInfoProto{valueInfo("logits", onnxpb.TensorProto_FLOAT, "batch", 4), valueInfo("probs", onnxpb.TensorProto_FLOAT, "batch", 4)},
	}
	return writeModel(t, filepath.Join(dir, "classifier.onnx"), g, 13)
}

// writeMixed writes a model with an int64 input of dynamic length, a scalar
// int64 input and a bool input: y = float(ids) + float(sr), z = not(flag).
func writeMixed(t testing.TB, dir string) string {
	t.Helper()
	g := &onnxpb.GraphProto{
		Name: proto.String("mixed"),
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"ids", "sr"}, []string{"sum"}),
			node("Cast", []string{"sum"}, []string{"y"}, intAttr("to", int64(onnxpb.TensorProto_FLOAT))),
			node("Not", []string{"flag"}, []string{"z"}),
		},
		Input: []*onnxpb.ValueInfoProto{
			valueInfo("ids", onnxpb.TensorProto_INT64, "batch", "seq"),
			valueInfo("sr", onnxpb.TensorProto_INT64),
			valueInfo("flag", onnxpb.TensorProto_BOOL, 2),
		},
		Output: []*onnxpb.ValueInfoProto{valueInfo("y", onnxpb.TensorProto_FLOAT, "batch", "seq"), valueInfo("z", onnxpb.TensorProto_BOOL, 2)},
	}
	return writeModel(t, filepath.Join(dir, "mixed.onnx"), g, 13)
}

// writeHalf writes x[2,3] float → Cast float16 → h, and the sum as a scalar.
func writeHalf(t testing.TB, dir string) string {
	t.Helper()
	g := &onnxpb.GraphProto{
		Name: proto.String("half"),
		Node: []*onnxpb.NodeProto{
			node("Cast", []string{"x"}, []string{"h"}, intAttr("to", int64(onnxpb.TensorProto_FLOAT16))),
			node("ReduceSum", []string{"x"}, []string{"s"}, intAttr("keepdims", 0)),
		},
		Input:  []*onnxpb.ValueInfoProto{valueInfo("x", onnxpb.TensorProto_FLOAT, 2, 3)},
		Output: []*onnxpb.ValueInfoProto{valueInfo("h", onnxpb.TensorProto_FLOAT16, 2, 3), valueInfo("s", onnxpb.TensorProto_FLOAT)},
	}
	return writeModel(t, filepath.Join(dir, "half.onnx"), g, 13)
}
