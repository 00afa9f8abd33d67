package quantize_test

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// matmulModel writes y = x·W for a K×N weight w (row-major) into dir.
func matmulModel(t *testing.T, k, n int, w []float32) string {
	t.Helper()
	raw := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	vi := func(name string, d ...int64) *onnxpb.ValueInfoProto {
		var dims []*onnxpb.TensorShapeProto_Dimension
		for _, x := range d {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: x}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(onnx.Float), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("g"),
			Node:        []*onnxpb.NodeProto{{Name: proto.String("mm"), OpType: proto.String("MatMul"), Input: []string{"x", "W"}, Output: []string{"y"}}},
			Initializer: []*onnxpb.TensorProto{{Name: proto.String("W"), DataType: proto.Int32(onnx.Float), Dims: []int64{int64(k), int64(n)}, RawData: raw}},
			Input:       []*onnxpb.ValueInfoProto{vi("x", 1, int64(k))},
			Output:      []*onnxpb.ValueInfoProto{vi("y", 1, int64(n))},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "mm.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// quantizedWeights returns every int8 weight of a quantized model with its
// column count, by name.
func quantizedWeights(t *testing.T, path string) map[string][]byte {
	t.Helper()
	m := open(t, path)
	out := map[string][]byte{}
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() != "MatMulInteger" && n.GetOpType() != "DynamicQuantizeMatMul" {
			continue
		}
		for _, tp := range m.Graph().GetInitializer() {
			if tp.GetName() == n.GetInput()[1] && tp.GetDataType() == onnx.Int8 {
				out[tp.GetName()] = tensorBytes(t, m, tp)
				out[tp.GetName()+"#cols"] = []byte{byte(tp.GetDims()[1] >> 8), byte(tp.GetDims()[1])}
			}
		}
	}
	return out
}

func cols(b []byte) int { return int(b[0])<<8 | int(b[1]) }

// The property the default guarantees: no pair of neighbouring int8
// weights (rows 2i, 2i+1 of a column) sums past PairLimit, so a CPU
// without VNNI computes exactly what one with VNNI does. Full range breaks
// it on weights like these and says the model needs VNNI.
func TestPortableInt8(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	const k, n = 65, 24 // odd K: the last row pairs with zero
	gauss := make([]float32, k*n)
	for i := range gauss {
		gauss[i] = float32(r.NormFloat64())
	}
	// Adversarial: every weight large and positive, so every pair is.
	flat := make([]float32, k*n)
	for i := range flat {
		flat[i] = 0.9 + 0.1*r.Float32()
	}
	// Already safe: neighbours alternate in sign.
	alt := make([]float32, k*n)
	for i := range alt {
		alt[i] = float32(1 - 2*((i/n)%2))
	}
	synthetic := synthModel(t, synth.Config{Layers: 2, Hidden: 64, Seed: 5})
	models := map[string]string{
		"gaussian": matmulModel(t, k, n, gauss), "same sign": matmulModel(t, k, n, flat),
		"alternating": matmulModel(t, k, n, alt), "synthetic": synthetic,
	}
	for name, in := range models {
		for _, tc := range []struct {
			opts     string
			o        quantize.Options
			portable bool
		}{
			{"default", quantize.Options{CostModel: quantize.CostModelOff}, true},
			{"per-channel", quantize.Options{CostModel: quantize.CostModelOff, PerChannel: true}, true},
			{"small chunks", quantize.Options{CostModel: quantize.CostModelOff, ChunkBytes: 3 * 4 * 64}, true}, // 3 rows of 64: chunks must hold row pairs
			{"reduce-range", quantize.Options{CostModel: quantize.CostModelOff, ReduceRange: true}, true},
			{"full-range", quantize.Options{CostModel: quantize.CostModelOff, FullRange: true}, false},
		} {
			t.Run(name+"/"+tc.opts, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "q.onnx")
				sum, err := quantize.Quantize(context.Background(), in, out, tc.o)
				if err != nil {
					t.Fatal(err)
				}
				onnxtest.Check(t, out)
				var overflows int64
				ws := quantizedWeights(t, out)
				for w, q := range ws {
					if c, ok := ws[w+"#cols"]; ok {
						overflows += quantize.PairOverflows(q, cols(c))
					}
				}
				md := quantize.ReadMetadata(open(t, out).Proto)
				req := md[manifests.AnnotationRequiresCPU]
				if got := md[manifests.AnnotationQuantizationPrefix+"weight_range"]; got != tc.o.Range() {
					t.Errorf("metadata weight_range %q, want %q", got, tc.o.Range())
				}
				if tc.portable {
					if overflows != 0 || req != "" || len(sum.NeedsVNNI) != 0 {
						t.Fatalf("%d overflowing pairs, requires %q, needs VNNI %v: want none", overflows, req, sum.NeedsVNNI)
					}
					if sum.PairsAdjusted != 0 {
						t.Errorf("%d pairs adjusted after rounding: the scale should have made room", sum.PairsAdjusted)
					}
					return
				}
				if (overflows > 0) != (len(sum.NeedsVNNI) > 0) || (overflows > 0) != (req == manifests.RequireVNNI) {
					t.Fatalf("%d overflowing pairs, needs VNNI %v, requires %q: they must agree", overflows, sum.NeedsVNNI, req)
				}
				if name != "alternating" && overflows == 0 {
					t.Fatalf("full range of %s: no overflowing pair; the test weights should have some", name)
				}
				if name == "alternating" && overflows != 0 {
					t.Fatalf("alternating signs never overflow, got %d", overflows)
				}
			})
		}
	}
}

// The portable scale keeps full range where it can: on weights whose
// neighbours alternate in sign it equals full range's, byte for byte.
func TestPortableKeepsFullRangeWhereSafe(t *testing.T) {
	const k, n = 16, 8
	alt := make([]float32, k*n)
	for i := range alt {
		alt[i] = float32(1-2*((i/n)%2)) * float32(1+i%5)
	}
	in := matmulModel(t, k, n, alt)
	a, b := filepath.Join(t.TempDir(), "a.onnx"), filepath.Join(t.TempDir(), "b.onnx")
	sa, err := quantize.Quantize(context.Background(), in, a, quantize.Options{CostModel: quantize.CostModelOff})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Quantize(context.Background(), in, b, quantize.Options{CostModel: quantize.CostModelOff, FullRange: true}); err != nil {
		t.Fatal(err)
	}
	if len(sa.Narrowed) != 0 {
		t.Fatalf("narrowed %v, want none", sa.Narrowed)
	}
	da, db := quantizedWeights(t, a), quantizedWeights(t, b)
	if string(da["W_quantized"]) != string(db["W_quantized"]) || len(da["W_quantized"]) != k*n {
		t.Fatal("portable and full-range weights differ where no pair overflows")
	}
}

// VNNIWeights finds, in the written model alone, what the quantizer
// reported: the weights whose pairs overflow without VNNI.
func TestVNNIWeights(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 2, Hidden: 64, Seed: 5})
	for _, o := range []quantize.Options{{CostModel: quantize.CostModelOff}, {CostModel: quantize.CostModelOff, FullRange: true}, {CostModel: quantize.CostModelOff, FullRange: true, ChunkBytes: 3 * 4 * 64}, {CostModel: quantize.CostModelOff, ReduceRange: true}} {
		out := filepath.Join(t.TempDir(), "q.onnx")
		sum, err := quantize.Quantize(context.Background(), in, out, o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := quantize.VNNIWeights(context.Background(), out)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, w := range sum.NeedsVNNI {
			want = append(want, w+"_quantized")
		}
		if len(got) != len(want) || (o.FullRange && len(got) == 0) {
			t.Fatalf("%s: VNNIWeights %v, quantizer reported %v", o.Range(), got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: VNNIWeights %v, quantizer reported %v", o.Range(), got, want)
			}
		}
	}
}
