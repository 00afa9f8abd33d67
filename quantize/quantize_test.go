package quantize_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

func open(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tensorBytes(t *testing.T, m *onnx.Model, tp *onnxpb.TensorProto) []byte {
	t.Helper()
	d, err := m.TensorData(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(io.NewSectionReader(d, 0, d.Size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func floats(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func initializers(m *onnx.Model) map[string]*onnxpb.TensorProto {
	out := map[string]*onnxpb.TensorProto{}
	for _, t := range m.Graph().GetInitializer() {
		out[t.GetName()] = t
	}
	return out
}

func opCounts(g *onnxpb.GraphProto) map[string]int {
	c := map[string]int{}
	for _, n := range g.GetNode() {
		c[n.GetOpType()]++
	}
	return c
}

func synthModel(t *testing.T, cfg synth.Config) string {
	t.Helper()
	p, err := synth.Generate(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dequantized checks every weight the run quantized against its FP32
// original: |w - (q - zp)·scale| <= scale/2 (+ rounding slack), and that
// every tensor left alone is byte-identical.
func TestInt8Weights(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 2, Hidden: 64, Seed: 5})
	tests := []struct {
		name string
		opts quantize.Options
		qmin float64
		qmax float64
	}{
		{"per-tensor", quantize.Options{CostModel: quantize.CostModelOff}, -127, 127},
		{"reduce-range", quantize.Options{CostModel: quantize.CostModelOff, ReduceRange: true}, -64, 64},
		{"per-channel", quantize.Options{CostModel: quantize.CostModelOff, PerChannel: true}, -127, 127},
		{"uint8", quantize.Options{CostModel: quantize.CostModelOff, Uint8: true}, 0, 255},
		{"uint8 reduce-range", quantize.Options{CostModel: quantize.CostModelOff, Uint8: true, ReduceRange: true}, 0, 127},
		{"small chunks", quantize.Options{CostModel: quantize.CostModelOff, PerChannel: true, ChunkBytes: 1000}, -127, 127},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "q.onnx")
			sum, err := quantize.Quantize(context.Background(), in, out, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			onnxtest.Check(t, out)
			if len(sum.Quantized) != 12 {
				t.Fatalf("quantized %d weights, want 12 (6 per layer)", len(sum.Quantized))
			}
			src, dst := open(t, in), open(t, out)
			ops := opCounts(dst.Graph())
			for op, want := range map[string]int{"DynamicQuantizeLinear": 12, "MatMulInteger": 12, "Cast": 12, "MatMul": 4} {
				if ops[op] != want {
					t.Errorf("%d %s nodes, want %d (ops %v)", ops[op], op, want, ops)
				}
			}
			si, di := initializers(src), initializers(dst)
			for name, st := range si {
				if dt, ok := di[name]; ok {
					if !bytes.Equal(tensorBytes(t, src, st), tensorBytes(t, dst, dt)) {
						t.Errorf("pass-through tensor %s changed", name)
					}
					continue
				}
				w := floats(tensorBytes(t, src, st))
				q := tensorBytes(t, dst, di[name+"_quantized"])
				scales := floats(tensorBytes(t, dst, di[name+"_scale"]))
				zps := tensorBytes(t, dst, di[name+"_zero_point"])
				n := int(st.GetDims()[1])
				for i, v := range w {
					j := 0
					if tc.opts.PerChannel {
						j = i % n
					}
					qv, zp := float64(int8(q[i])), float64(int8(zps[j]))
					if tc.opts.Uint8 {
						qv, zp = float64(q[i]), float64(zps[j])
					}
					if qv < tc.qmin || qv > tc.qmax {
						t.Fatalf("%s[%d] = %v outside [%v, %v]", name, i, qv, tc.qmin, tc.qmax)
					}
					if d := math.Abs(float64(v) - (qv-zp)*float64(scales[j])); d > float64(scales[j])*0.5001 {
						t.Fatalf("%s[%d]: %v dequantizes to %v (scale %v)", name, i, v, (qv-zp)*float64(scales[j]), scales[j])
					}
				}
			}
		})
	}
}

func TestInt4Weights(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 1, Hidden: 72, Seed: 9}) // K=72: a partial last block
	for _, sym := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "q.onnx")
		if _, err := quantize.Quantize(context.Background(), in, out, quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt4, Symmetric: sym, BlockSize: 32, ChunkBytes: 4096}); err != nil {
			t.Fatal(err)
		}
		onnxtest.Check(t, out)
		src, dst := open(t, in), open(t, out)
		if ops := opCounts(dst.Graph()); ops["MatMulNBits"] != 6 {
			t.Fatalf("ops %v, want 6 MatMulNBits", ops)
		}
		si, di := initializers(src), initializers(dst)
		name := "layers.0.attn.q.weight"
		w := floats(tensorBytes(t, src, si[name]))
		q := tensorBytes(t, dst, di[name+"_Q4"])
		scales := floats(tensorBytes(t, dst, di[name+"_scales"]))
		var zps []byte
		if !sym {
			zps = tensorBytes(t, dst, di[name+"_zero_points"])
		}
		K, N, blocks := 72, 72, 3
		for k := 0; k < K; k++ {
			for n := 0; n < N; n++ {
				b := k / 32
				byt := q[(n*blocks+b)*16+(k%32)/2]
				code := byt & 0x0f
				if k%2 == 1 {
					code = byt >> 4
				}
				zp := byte(8)
				if !sym {
					zp = zps[n*2+b/2] >> (4 * (b % 2)) & 0x0f
				}
				s := scales[n*blocks+b]
				got := float64(int(code)-int(zp)) * float64(s)
				// Symmetric blocks map the largest magnitude to -8, so the
				// other sign clamps at +7: up to one step off there.
				tol := 0.5001
				if sym && code == 15 {
					tol = 1.0001
				}
				if d := math.Abs(got - float64(w[k*N+n])); d > math.Abs(float64(s))*tol {
					t.Fatalf("symmetric=%v w[%d,%d]=%v dequantizes to %v (scale %v)", sym, k, n, w[k*N+n], got, s)
				}
			}
		}
	}
}

func TestFP16(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 1, Hidden: 64, Seed: 2})
	for _, weightsOnly := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "h.onnx")
		sum, err := quantize.Quantize(context.Background(), in, out, quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeFP16, FP16WeightsOnly: weightsOnly})
		if err != nil {
			t.Fatal(err)
		}
		onnxtest.Check(t, out)
		dst := open(t, out)
		casts := opCounts(dst.Graph())["Cast"]
		// Weights only: one Cast per weight. Whole graph: the synthetic
		// model's operators all compute in float16, so only its input and
		// output cross a Cast.
		want := len(sum.Quantized)
		if !weightsOnly {
			want = 2
		}
		if casts != want || len(sum.Quantized) == 0 {
			t.Errorf("weightsOnly=%v: %d Cast nodes, want %d (%d tensors converted)", weightsOnly, casts, want, len(sum.Quantized))
		}
		if r := float64(sum.OutputDataBytes) / float64(sum.InputDataBytes); r != 0.5 {
			t.Errorf("weightsOnly=%v: fp16 data is %.3f of fp32, want 0.5", weightsOnly, r)
		}
		for _, init := range dst.Graph().GetInitializer() {
			if init.GetDataType() == onnx.Float && (!weightsOnly || elems(init) >= 16) {
				t.Errorf("weightsOnly=%v: initializer %s is still FLOAT", weightsOnly, init.GetName())
			}
		}
		// Graph inputs and outputs stay float32.
		for _, v := range append(dst.Graph().GetInput(), dst.Graph().GetOutput()...) {
			if et := v.GetType().GetTensorType().GetElemType(); et != onnx.Float {
				t.Errorf("%s has element type %d, want FLOAT", v.GetName(), et)
			}
		}
	}
}

func elems(t *onnxpb.TensorProto) int64 {
	n, _ := onnx.NumElements(t.GetDims())
	return n
}

// The real models: what is not quantized is byte-identical; silero (all
// weights inside If subgraphs) passes through whole.
func TestRealModelsPassThrough(t *testing.T) {
	for _, tc := range []struct {
		model     string
		mode      quantize.Mode
		quantized int
		msDomain  bool
	}{
		{onnxtest.PPOCRv4, quantize.ModeInt8, 9, true}, // opset 9: DynamicQuantizeMatMul
		{onnxtest.HelloDeepa, quantize.ModeInt8, 3, false},
		{onnxtest.HelloDeepa, quantize.ModeInt4, 3, true},
		{onnxtest.SileroVAD, quantize.ModeInt8, 0, false},
		{onnxtest.SileroVAD, quantize.ModeFP16, 0, false},
	} {
		t.Run(tc.model+"/"+string(tc.mode), func(t *testing.T) {
			in := onnxtest.Model(t, tc.model)
			out := filepath.Join(t.TempDir(), "q.onnx")
			sum, err := quantize.Quantize(context.Background(), in, out, quantize.Options{CostModel: quantize.CostModelOff, Mode: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			onnxtest.Check(t, out)
			if len(sum.Quantized) != tc.quantized {
				t.Fatalf("quantized %v, want %d", sum.Quantized, tc.quantized)
			}
			src, dst := open(t, in), open(t, out)
			hasMS := false
			for _, o := range dst.Proto.GetOpsetImport() {
				hasMS = hasMS || o.GetDomain() == "com.microsoft"
			}
			if hasMS != tc.msDomain {
				t.Errorf("com.microsoft opset import: %v, want %v", hasMS, tc.msDomain)
			}
			if opset := dst.Proto.GetOpsetImport()[0]; !proto.Equal(opset, src.Proto.GetOpsetImport()[0]) {
				t.Errorf("opset changed: %v -> %v", src.Proto.GetOpsetImport()[0], opset)
			}
			// The model's own metadata passes through; modelctl's entries
			// (the settings, under its annotation prefix) are added.
			var theirs []*onnxpb.StringStringEntryProto
			for _, p := range dst.Proto.GetMetadataProps() {
				if !strings.HasPrefix(p.GetKey(), manifests.AnnotationPrefix) {
					theirs = append(theirs, p)
				}
			}
			if src.Proto.GetIrVersion() != dst.Proto.GetIrVersion() || src.Proto.GetProducerName() != dst.Proto.GetProducerName() ||
				!proto.Equal(&onnxpb.ModelProto{MetadataProps: src.Proto.MetadataProps}, &onnxpb.ModelProto{MetadataProps: theirs}) {
				t.Error("model metadata changed")
			}
			if md := quantize.ReadMetadata(dst.Proto); md[manifests.AnnotationQuantizationPrefix+"mode"] != string(tc.mode) {
				t.Errorf("modelctl metadata %v: want mode %q", md, tc.mode)
			}
			si, di := initializers(src), initializers(dst)
			same := 0
			for name, st := range si {
				if dt, ok := di[name]; ok {
					same++
					if !bytes.Equal(tensorBytes(t, src, st), tensorBytes(t, dst, dt)) {
						t.Errorf("pass-through initializer %s changed", name)
					}
				}
			}
			// Nodes other than the rewritten ones are unchanged, subgraphs included.
			dn := map[string]*onnxpb.NodeProto{}
			for _, n := range dst.Graph().GetNode() {
				dn[strings.Join(n.GetOutput(), ",")] = n
			}
			rewritten := 0
			for _, n := range src.Graph().GetNode() {
				d, ok := dn[strings.Join(n.GetOutput(), ",")]
				if ok && sameBytes(t, n, d) {
					continue
				}
				rewritten++
			}
			// Each quantized weight removes its Constant node (PP-OCR) and
			// rewrites its MatMul/Gemm.
			if max := 2 * tc.quantized; rewritten > max {
				t.Errorf("%d nodes changed, want at most %d", rewritten, max)
			}
			if tc.quantized == 0 && !sameBytes(t, src.Graph(), dst.Graph()) {
				t.Error("graph changed though nothing was quantized")
			}
		})
	}
}

// sameBytes compares encodings: proto.Equal calls a NaN attribute unequal
// to itself (silero has one).
func sameBytes(t *testing.T, a, b proto.Message) bool {
	t.Helper()
	opts := proto.MarshalOptions{Deterministic: true}
	ab, err1 := opts.Marshal(a)
	bb, err2 := opts.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(ab, bb)
}

func TestBadInput(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 1, Hidden: 64})
	// Truncate the data file: a clear error, and no output left behind.
	data := in + ".data"
	st, _ := os.Stat(data)
	if err := os.Truncate(data, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	_, err := quantize.Quantize(context.Background(), in, filepath.Join(outDir, "q.onnx"), quantize.Options{CostModel: quantize.CostModelOff})
	if err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("err = %v, want a too-short data file", err)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("left %v behind", ents)
	}
	tests := []struct {
		opts    quantize.Options
		wantErr string
	}{
		{quantize.Options{CostModel: quantize.CostModelOff, Mode: "int3"}, "want int8, fp16 or int4"},
		{quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeInt4, BlockSize: 48}, "power of two"},
		{quantize.Options{CostModel: quantize.CostModelOff, OpTypes: []string{"Conv"}}, "only MatMul and Gemm"},
	}
	for _, tc := range tests {
		_, err := quantize.Quantize(context.Background(), in, filepath.Join(outDir, "q.onnx"), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: err = %v, want %q", tc.opts, err, tc.wantErr)
		}
	}
}

func TestCancel(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 2, Hidden: 64})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	outDir := t.TempDir()
	_, err := quantize.Quantize(ctx, in, filepath.Join(outDir, "q.onnx"), quantize.Options{CostModel: quantize.CostModelOff})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("left %v behind", ents)
	}
}

func TestSelection(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 1, Hidden: 64})
	tests := []struct {
		opts quantize.Options
		want int
	}{
		{quantize.Options{CostModel: quantize.CostModelOff, Nodes: []string{"layers.0.attn.q", "layers.0.ffn.up"}}, 2},
		{quantize.Options{CostModel: quantize.CostModelOff, ExcludeNodes: []string{"layers.0.attn.q"}}, 5},
		{quantize.Options{CostModel: quantize.CostModelOff, ExcludeOpTypes: []string{"MatMul"}}, 0},
		{quantize.Options{CostModel: quantize.CostModelOff, MinWeightElems: 64 * 64 * 2}, 2}, // only the FFN pair
	}
	for _, tc := range tests {
		sum, err := quantize.Quantize(context.Background(), in, filepath.Join(t.TempDir(), "q.onnx"), tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Quantized) != tc.want {
			t.Errorf("%+v: quantized %v, want %d", tc.opts, sum.Quantized, tc.want)
		}
	}
}

// TestFP16Subgraph: a value computed in float16 and read by an If branch
// is recreated in float32 under its own name, and the branch is untouched.
func TestFP16Subgraph(t *testing.T) {
	f32 := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(onnx.Float), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 4}}}}}}}}
	}
	branch := func(name string) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: &onnxpb.GraphProto{
			Name:   proto.String(name),
			Node:   []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{"r"}, Output: []string{name + "_out"}}},
			Output: []*onnxpb.ValueInfoProto{f32(name + "_out")},
		}}
	}
	cond := &onnxpb.ValueInfoProto{Name: proto.String("c"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_BOOL)), Shape: &onnxpb.TensorShapeProto{}}}}}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("g"),
			Node: []*onnxpb.NodeProto{
				{OpType: proto.String("Relu"), Input: []string{"x"}, Output: []string{"r"}},
				{OpType: proto.String("If"), Input: []string{"c"}, Output: []string{"y"}, Attribute: []*onnxpb.AttributeProto{branch("then_branch"), branch("else_branch")}},
			},
			Input:  []*onnxpb.ValueInfoProto{f32("x"), cond},
			Output: []*onnxpb.ValueInfoProto{f32("y")},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "if.onnx")
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "h.onnx")
	if _, err := quantize.Quantize(context.Background(), in, out, quantize.Options{CostModel: quantize.CostModelOff, Mode: quantize.ModeFP16}); err != nil {
		t.Fatal(err)
	}
	onnxtest.Check(t, out)
	dst := open(t, out)
	var ops []string
	for _, n := range dst.Graph().GetNode() {
		ops = append(ops, n.GetOpType()+"->"+strings.Join(n.GetOutput(), ","))
	}
	want := "Cast->x_fp16 Relu->r_fp16 Cast->r If->y"
	if got := strings.Join(ops, " "); got != want {
		t.Fatalf("nodes %q, want %q", got, want)
	}
	if !sameBytes(t, m.Graph.Node[1], dst.Graph().GetNode()[3]) {
		t.Error("the If node (and its branches) changed")
	}
}
