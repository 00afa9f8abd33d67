package auto

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// wholeOutputs runs the model whole on every sample.
func wholeOutputs(t *testing.T, path string, set *sampleSet) [][]bench.Tensor {
	t.Helper()
	var all [][]bench.Tensor
	if err := runSamples(context.Background(), path, set, bench.Options{Threads: 1}, func(i int, outs []bench.Tensor) error {
		all = append(all, outs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// TestPiecesMatchWhole: a model cut into pieces (a budget of a fraction
// of its weight) computes what it computes whole, on the synthetic model in
// FP32, fp16 (float16 values cross the cuts) and int8, and on the real
// models; calibration in pieces sees the same ranges.
func TestPiecesMatchWhole(t *testing.T) {
	ortLib(t)
	ctx := context.Background()
	syn, err := synth.Generate(t.TempDir(), synth.Config{Layers: 4, Hidden: 64, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	variants := map[string]string{"synthetic": syn}
	for _, mode := range []quantize.Mode{quantize.ModeFP16, quantize.ModeInt8} {
		out := filepath.Join(dir, string(mode)+".onnx")
		if _, err := quantize.Quantize(ctx, syn, out, quantize.Options{Mode: mode, CostModel: quantize.CostModelOff}); err != nil {
			t.Fatal(err)
		}
		variants["synthetic-"+string(mode)] = out
	}
	variants["ppocr"] = onnxtest.Model(t, onnxtest.PPOCRv4)
	variants["deepa"] = onnxtest.Model(t, onnxtest.HelloDeepa)
	// Its weights are all inside If subgraphs: the If is cut from the
	// nodes before it and keeps what its branches read.
	variants["silero"] = onnxtest.Model(t, onnxtest.SileroVAD)
	shapes := map[string]map[string][]int64{
		"synthetic": {"input": {1, 8, 64}}, "synthetic-fp16": {"input": {1, 8, 64}}, "synthetic-int8": {"input": {1, 8, 64}},
		"ppocr": {"x": {1, 3, 48, 320}}, "deepa": nil, "silero": {"input": {1, 512}, "state": {2, 1, 128}},
	}
	for name, path := range variants {
		t.Run(name, func(t *testing.T) {
			set, err := openSamples(path, Samples{Shapes: shapes[name], Count: 2})
			if err != nil {
				t.Fatal(err)
			}
			whole, err := planPieces(path, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := planPieces(path, whole.weight/5, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d pieces of at most %d bytes", len(plan.parts), whole.weight/5)
			if len(plan.parts) < 2 {
				t.Fatalf("%d pieces (%s), want several at a fifth of the weight", len(plan.parts), plan.note)
			}
			// Every node is in exactly one piece, in order, and every
			// value a piece reads is an input, an initializer or computed
			// in the piece before it is read.
			next, refs := 0, 0
			for k, pc := range plan.parts {
				if pc.from != next || pc.to <= pc.from {
					t.Fatalf("piece %d is nodes [%d, %d), want to start at %d", k, pc.from, pc.to, next)
				}
				next = pc.to
				b, err := plan.build(k)
				if err != nil {
					t.Fatal(err)
				}
				m := &onnxpb.ModelProto{}
				if err := proto.Unmarshal(b, m); err != nil {
					t.Fatal(err)
				}
				// Weights are references into the original files, never
				// copies: a large one is external data in the piece too.
				for _, in := range m.GetGraph().GetInitializer() {
					if n, _ := onnx.ByteSize(in); n >= 64<<10 && !onnx.IsExternal(in) {
						t.Errorf("piece %d: initializer %s (%d bytes) is inline", k, in.GetName(), n)
					}
					if onnx.IsExternal(in) {
						refs++
					}
				}
				checkPieceComputes(t, fmt.Sprintf("piece %d", k), m)
			}
			if want := len(plan.m.Embedded); name == "deepa" && (want != 1 || refs < want) {
				// Its 2400x32 weight is raw_data inside the .onnx: the
				// piece refers to those bytes there.
				t.Errorf("deepa: %d external references in the pieces, %d embedded weights", refs, want)
			}
			if next != len(plan.m.Graph().GetNode()) {
				t.Fatalf("pieces end at node %d of %d", next, len(plan.m.Graph().GetNode()))
			}
			want := wholeOutputs(t, path, set)
			var got [][]bench.Tensor
			if _, err := runPieces(ctx, plan, set, bench.Options{Threads: 1}, t.TempDir(), pieceRun{outputs: func(i int, outs []bench.Tensor) error {
				got = append(got, outs)
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d samples in pieces, %d whole", len(got), len(want))
			}
			for i := range want {
				for j := range want[i] {
					a, _ := want[i][j].Float64s()
					b, _ := got[i][j].Float64s()
					if len(a) != len(b) || len(a) == 0 {
						t.Fatalf("sample %d output %s: %d values in pieces, %d whole", i, want[i][j].Name, len(b), len(a))
					}
					worst := 0.0
					for x := range a {
						worst = math.Max(worst, math.Abs(a[x]-b[x])/math.Max(1, math.Abs(a[x])))
					}
					// The same kernels on the same values: equal but for
					// the order of float additions where a fusion across
					// the cut is lost. In fp16, onnxruntime keeps in
					// float32 what it casts between its float16 operators
					// where a piece hands on a true float16: one rounding
					// to float16 (2^-11) more at each cut.
					tol := 1e-4
					if strings.HasSuffix(name, "fp16") {
						tol = 1e-2
					}
					if worst > tol {
						t.Errorf("sample %d output %s: pieces differ from whole by %g", i, want[i][j].Name, worst)
					}
				}
			}
		})
	}
}

// TestCalibratePieces: calibration in pieces measures the ranges it
// measures whole.
func TestCalibratePieces(t *testing.T) {
	ortLib(t)
	ctx := context.Background()
	in, err := synth.Generate(t.TempDir(), synth.Config{Layers: 4, Hidden: 64, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	plan, _, err := quantize.Plan(ctx, in, quantize.Options{Mode: quantize.ModeInt8Static, CostModel: quantize.CostModelOff})
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	seen := map[string]bool{}
	for _, p := range plan {
		for _, v := range []string{p.Activation, p.Output} {
			if !seen[v] {
				seen[v] = true
				acts = append(acts, v)
			}
		}
	}
	acts = append(acts, "input") // a graph input as well
	samples := Samples{Shapes: map[string][]int64{"input": {1, 8, 64}}, Count: 3}
	for _, method := range []string{MinMax, Percentile} {
		whole, err := Calibrate(ctx, in, acts, samples, CalibrationOptions{Method: method, Options: bench.Options{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		wp, err := planPieces(in, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		pieces, err := Calibrate(ctx, in, acts, samples, CalibrationOptions{Method: method, PieceBudget: wp.weight / 4, Options: bench.Options{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if len(pieces) != len(whole) || len(whole) != len(acts) {
			t.Fatalf("%s: %d ranges in pieces, %d whole, %d asked", method, len(pieces), len(whole), len(acts))
		}
		for _, a := range acts {
			w, p := whole[a], pieces[a]
			if math.Abs(float64(w.Min-p.Min)) > 1e-5*math.Max(1, math.Abs(float64(w.Min))) || math.Abs(float64(w.Max-p.Max)) > 1e-5*math.Max(1, math.Abs(float64(w.Max))) {
				t.Errorf("%s %s: %+v in pieces, %+v whole", method, a, p, w)
			}
		}
	}
}

// TestPiecesFallBack: graphs that cannot be cut run whole, and say why.
func TestPiecesFallBack(t *testing.T) {
	in, err := synth.Generate(t.TempDir(), synth.Config{Layers: 2, Hidden: 64, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(in)
	save := func(name string, edit func(g *onnxpb.GraphProto)) string {
		c, err := onnx.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		edit(c.Graph())
		p := filepath.Join(dir, name)
		if err := onnx.Save(c, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	weight := int64(0)
	for _, tn := range m.Graph().GetInitializer() {
		weight += weightCost(tn)
	}
	for _, tc := range []struct {
		name string
		edit func(g *onnxpb.GraphProto)
		note string
	}{
		{"reversed", func(g *onnxpb.GraphProto) {
			n := g.GetNode()
			for i, j := 0, len(n)-1; i < j; i, j = i+1, j-1 {
				n[i], n[j] = n[j], n[i]
			}
		}, "not in topological order"},
		{"untyped", func(g *onnxpb.GraphProto) {
			// Every node an operator the type table does not know: no
			// value has a known type, so no cut.
			for _, n := range g.GetNode() {
				n.OpType = proto.String("Mystery")
				n.Domain = proto.String("com.example")
			}
		}, "tensors of known type cross"},
		{"output is an input", func(g *onnxpb.GraphProto) {
			g.Output = append(g.Output, g.GetInput()[0])
		}, "is not computed by a node"},
	} {
		p := save(tc.name+".onnx", tc.edit)
		plan, err := planPieces(p, weight/4, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if plan.parts != nil || !strings.Contains(plan.note, tc.note) || !strings.Contains(plan.note, "runs whole") {
			t.Errorf("%s: %d pieces, note %q, want none and %q", tc.name, len(plan.parts), plan.note, tc.note)
		}
	}
	// A budget under one weight: that weight's node is a piece of its
	// own, over the budget, and the plan says so.
	if plan, err := planPieces(in, 1000, nil); err != nil || len(plan.parts) < 2 || !strings.Contains(plan.note, "over the 0 MiB budget: node") {
		t.Errorf("a budget under one weight: %v, %d pieces, note %q", err, len(plan.parts), plan.note)
	}
	// Under the budget: whole, without a note.
	if plan, err := planPieces(in, weight, nil); err != nil || plan.parts != nil || plan.note != "" {
		t.Errorf("within the budget: %v, %+v", err, plan)
	}
}

// TestSearchInPieces: with FP32 over the piece budget, the search runs
// every candidate in pieces and judges each as it does whole (the same
// quality figures), times them by their pieces, and says so.
func TestSearchInPieces(t *testing.T) {
	ortLib(t)
	ctx := context.Background()
	in, err := synth.Generate(t.TempDir(), synth.Config{Layers: 3, Hidden: 64, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	wp, err := planPieces(in, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	samples := Samples{Shapes: map[string][]int64{"input": {1, 8, 64}}, Count: 2}
	search := func(budget int64) *SearchResult {
		out := filepath.Join(t.TempDir(), "auto.onnx")
		res, err := Quantize(ctx, in, out, Options{Options: quantize.Options{CostModel: quantize.CostModelOff}, Target: &Target{MinCosine: 0.99},
			Samples: samples, Bench: bench.Options{Threads: 1}, PieceBudget: budget})
		if err != nil {
			t.Fatal(err)
		}
		return res.Search
	}
	whole, pieces := search(-1), search(wp.weight/4)
	if whole.Memory != "" || !strings.Contains(pieces.Memory, "pieces") {
		t.Errorf("memory notes: whole %q, in pieces %q", whole.Memory, pieces.Memory)
	}
	if len(whole.Candidates) != len(pieces.Candidates) {
		t.Fatalf("%d candidates whole, %d in pieces", len(whole.Candidates), len(pieces.Candidates))
	}
	for i, w := range whole.Candidates {
		p := pieces.Candidates[i]
		tol := 1e-5
		if w.Name == "fp16" {
			tol = 1e-3 // one float16 rounding more at each cut (see TestPiecesMatchWhole)
		}
		if p.Name != w.Name || math.Abs(p.Quality.Cosine-w.Quality.Cosine) > tol || p.Meets != w.Meets || p.Bytes != w.Bytes {
			t.Errorf("%s: in pieces %+v, whole %+v", w.Name, p, w)
		}
		if p.Meets && !(p.Speedup > 0) {
			t.Errorf("%s: speedup %g in pieces", p.Name, p.Speedup)
		}
	}
	if c := pieces.Candidates[choose(pieces.Candidates, PreferSpeed)]; c.Name != pieces.Chosen || !c.Meets {
		t.Errorf("in pieces chose %s: %+v", pieces.Chosen, c)
	}
	// Above int8: the per-node damage runs untimed, the plan that keeps
	// nodes in float is timed by its pieces.
	res, err := Quantize(ctx, in, filepath.Join(t.TempDir(), "kept.onnx"), Options{Options: quantize.Options{CostModel: quantize.CostModelOff}, Target: &Target{MinCosine: 0.999995},
		Samples: samples, Bench: bench.Options{Threads: 1}, PieceBudget: wp.weight / 4})
	if err != nil && !strings.Contains(err.Error(), "no plan meets") {
		t.Fatal(err)
	}
	if err == nil {
		for _, c := range res.Search.Candidates {
			if c.Meets && !(c.Speedup > 0) {
				t.Errorf("%s meets the target with speedup %g", c.Name, c.Speedup)
			}
		}
		t.Logf("chose %s: %s", res.Search.Chosen, res.Search.Why)
	}
}

// TestPlanPiecesRandomGraphs: on random graphs (random readers, Constants
// anywhere, some nodes with subgraphs reading outer values), every plan
// runs every node once, in order, and no piece reads a value it lacks.
func TestPlanPiecesRandomGraphs(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	f32 := int32(onnxpb.TensorProto_FLOAT)
	vi := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(f32)}}}}
	}
	cut := 0
	defer func() {
		if cut < 50 {
			t.Errorf("only %d of 200 graphs were cut", cut)
		}
	}()
	for iter := 0; iter < 200; iter++ {
		g := &onnxpb.GraphProto{Name: proto.String("g"), Input: []*onnxpb.ValueInfoProto{vi("x")}}
		values := []string{"x"}
		n := 2 + rng.IntN(40)
		for i := 0; i < n; i++ {
			out := fmt.Sprintf("v%d", i)
			switch rng.IntN(5) {
			case 0: // a Constant weight
				g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{out},
					Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
						T: &onnxpb.TensorProto{Dims: []int64{int64(1 + rng.IntN(1000))}, DataType: proto.Int32(f32), RawData: make([]byte, 0)}}}})
			case 1: // an initializer read by an Add
				w := fmt.Sprintf("w%d", i)
				g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String(w), Dims: []int64{int64(1 + rng.IntN(1000))}, DataType: proto.Int32(f32)})
				g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Add"), Input: []string{values[rng.IntN(len(values))], w}, Output: []string{out}})
			case 2: // an If whose branch reads an outer value
				outer := values[rng.IntN(len(values))]
				branch := &onnxpb.GraphProto{Name: proto.String("b"), Output: []*onnxpb.ValueInfoProto{vi("r")},
					Node: []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{outer}, Output: []string{"r"}}}}
				g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("If"), Input: []string{values[rng.IntN(len(values))]}, Output: []string{out},
					Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch},
						{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch}}})
			default:
				g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Mul"), Input: []string{values[rng.IntN(len(values))], values[rng.IntN(len(values))]}, Output: []string{out}})
			}
			values = append(values, out)
		}
		// The last value computed by a node that is not a Constant is
		// the output.
		for i := len(g.Node) - 1; i >= 0; i-- {
			if g.Node[i].GetOpType() != "Constant" {
				g.Output = []*onnxpb.ValueInfoProto{vi(g.Node[i].GetOutput()[0])}
				break
			}
		}
		if g.Output == nil {
			continue
		}
		for _, c := range g.Node {
			if c.GetOpType() == "Constant" {
				at := c.GetAttribute()[0].GetT()
				at.RawData = make([]byte, 4*at.GetDims()[0])
			}
		}
		for _, w := range g.Initializer {
			w.RawData = make([]byte, 4*w.GetDims()[0])
		}
		b, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
			OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(17)}}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("m%d.onnx", iter))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		plan, err := planPieces(path, int64(1+rng.IntN(4000)), nil)
		if err != nil {
			t.Fatalf("graph %d: %v", iter, err)
		}
		if plan.parts == nil {
			continue
		}
		cut++
		ran := map[int]int{}
		for k, pc := range plan.parts {
			b, err := plan.build(k)
			if err != nil {
				t.Fatal(err)
			}
			m := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(b, m); err != nil {
				t.Fatal(err)
			}
			checkPieceComputes(t, fmt.Sprintf("graph %d piece %d", iter, k), m)
			if len(m.GetGraph().GetOutput()) == 0 {
				t.Errorf("graph %d piece %d: no outputs", iter, k)
			}
			for _, i := range pc.nodes {
				if g.Node[i].GetOpType() != "Constant" {
					ran[i]++
				}
			}
		}
		// Every node runs at most once (a piece of dead nodes, whose
		// results nothing reads, is left out), and the output is computed.
		for i, nd := range g.Node {
			if nd.GetOpType() != "Constant" && ran[i] > 1 {
				t.Errorf("graph %d: node %d runs %d times", iter, i, ran[i])
			}
		}
		if last := plan.parts[len(plan.parts)-1]; !slices.Contains(last.outputs, g.Output[0].GetName()) {
			t.Errorf("graph %d: the last piece computes %v, not the output %s", iter, last.outputs, g.Output[0].GetName())
		}
	}
}

// checkPieceComputes fails t when a node of the piece m reads a value the
// piece neither takes, holds nor computes before it, or when an output of
// m is not computed.
func checkPieceComputes(t *testing.T, what string, m *onnxpb.ModelProto) {
	t.Helper()
	have := map[string]bool{}
	for _, v := range m.GetGraph().GetInput() {
		have[v.GetName()] = true
	}
	for _, in := range m.GetGraph().GetInitializer() {
		have[in.GetName()] = true
	}
	for _, n := range m.GetGraph().GetNode() {
		nodeNeeds(n, func(v string) {
			if !have[v] {
				t.Errorf("%s: node %s reads %s, which the piece does not have", what, n.GetName(), v)
			}
		})
		for _, o := range n.GetOutput() {
			have[o] = true
		}
	}
	for _, o := range m.GetGraph().GetOutput() {
		if !have[o.GetName()] {
			t.Errorf("%s: output %s is not computed", what, o.GetName())
		}
	}
}
