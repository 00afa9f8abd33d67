package auto

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// DefaultPieceBudget is the weight a piece of a model may hold when
// calibration and the search run a model too large to load whole: one
// piece's session (its weights, read by onnxruntime, and onnxruntime's packed
// copies of them) stays well under the 512 MiB a search may take.
const DefaultPieceBudget = 128 << 20

// maxCutLive bounds the tensors that may cross a cut; a graph where every
// cut crosses more is run whole.
const maxCutLive = 32

// crossSuffix names what crosses a cut in place of a value (see build);
// f32Suffix its float32 copy when it is float16.
const (
	crossSuffix = "::modelctl-cross"
	f32Suffix   = "::modelctl-f32"
)

// piecePlan is a model cut into pieces that run one after another, each a
// sub-model of consecutive nodes whose initializers are references into the
// model's own files (nothing is copied). A nil parts means the model runs
// whole: it fits the budget, or it cannot be cut (note says why); with
// parts, a note says that a piece is over the budget.
type piecePlan struct {
	m      *onnx.Model
	parts  []piece
	note   string
	types  map[string]int32 // element type of every value crossing a cut
	read   map[string]int   // the last node reading each value
	extra  map[string]bool  // values handed out as they are computed
	weight int64            // the model's weight, as the budget counts it
}

// piece is one sub-model: nodes [from, to) of the main graph.
type piece struct {
	from, to int
	nodes    []int    // the nodes it runs, in order: the Constants it reads, then its own
	inputs   []string // values it reads from samples or earlier pieces
	outputs  []string // values later pieces read, graph outputs, and extra values
	inits    []*onnxpb.TensorProto
	weight   int64
}

// weightCost is what a tensor costs a session, as the budget counts it:
// its bytes, and for float16 those of float32, which onnxruntime's CPU
// provider casts most float16 weights to at load.
func weightCost(t *onnxpb.TensorProto) int64 {
	n, err := onnx.ByteSize(t)
	if err != nil {
		return 0
	}
	if t.GetDataType() == int32(onnxpb.TensorProto_FLOAT16) {
		n *= 2
	}
	return n
}

// nodeNeeds calls fn with every value node n reads: its inputs, and the
// names its subgraphs (If, Loop, Scan bodies) take from the enclosing
// scope, so a cut never separates a node from a tensor a subgraph needs.
func nodeNeeds(n *onnxpb.NodeProto, fn func(string)) {
	for _, in := range n.GetInput() {
		if in != "" {
			fn(in)
		}
	}
	for _, a := range n.GetAttribute() {
		if a.GetG() != nil {
			subgraphNeeds(a.GetG(), fn)
		}
		for _, g := range a.GetGraphs() {
			subgraphNeeds(g, fn)
		}
	}
}

func subgraphNeeds(g *onnxpb.GraphProto, fn func(string)) {
	defined := map[string]bool{}
	for _, v := range g.GetInput() {
		defined[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, t := range g.GetSparseInitializer() {
		defined[t.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		nodeNeeds(n, func(name string) {
			if !defined[name] {
				fn(name)
			}
		})
		for _, o := range n.GetOutput() {
			defined[o] = true
		}
	}
}

// planPieces cuts the model at path into pieces of at most budget bytes of
// weight, at the points of its node order where fewest tensors are live
// (between transformer blocks, usually), each crossing tensor of a known
// element type. extra are values to hand out as well (calibration's
// activations); they become outputs of the piece that computes them.
func planPieces(path string, budget int64, extra []string) (*piecePlan, error) {
	m, err := onnx.Open(path)
	if err != nil {
		return nil, err
	}
	p := &piecePlan{m: m}
	g := m.Graph()
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
		p.weight += weightCost(t)
	}
	// Weights may also be Constant nodes (PP-OCR's export has no
	// initializers at all, and puts its Constants far from their
	// readers): like initializers, they are free values that each piece
	// takes a copy of where it reads them, never a tensor that crosses.
	nodes := g.GetNode()
	n := len(nodes)
	consts := map[string]int{} // Constant node output -> node
	constWeight := map[string]int64{}
	for i, nd := range nodes {
		if nd.GetOpType() != "Constant" || len(nd.GetOutput()) != 1 || len(nd.GetAttribute()) != 1 || nd.GetOutput()[0] == "" {
			continue
		}
		consts[nd.GetOutput()[0]] = i
		if a := nd.GetAttribute()[0]; a.GetT() != nil {
			constWeight[nd.GetOutput()[0]] = weightCost(a.GetT())
			p.weight += constWeight[nd.GetOutput()[0]]
		}
	}
	free := func(name string) (int64, bool) {
		if t := inits[name]; t != nil {
			return weightCost(t), true
		}
		if _, ok := consts[name]; ok {
			return constWeight[name], true
		}
		return 0, false
	}
	isConst := func(i int) bool {
		nd := nodes[i]
		if nd.GetOpType() != "Constant" || len(nd.GetOutput()) != 1 {
			return false
		}
		_, ok := consts[nd.GetOutput()[0]]
		return ok
	}
	// A node with subgraphs (If, Loop) holds their weights: silero's are
	// all there.
	subWeight := make([]int64, n)
	for i, nd := range nodes {
		for _, a := range nd.GetAttribute() {
			for _, sg := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
				if sg != nil {
					subWeight[i] += graphWeight(sg)
				}
			}
		}
		p.weight += subWeight[i]
	}
	if budget <= 0 || p.weight <= budget {
		return p, nil // fits: runs whole
	}
	whole := func(format string, args ...any) (*piecePlan, error) {
		p.note = fmt.Sprintf("%s runs whole (%d MiB of weights, over the %d MiB a piece may hold): ", filepath.Base(path), p.weight>>20, budget>>20) + fmt.Sprintf(format, args...)
		return p, nil
	}
	if len(g.GetSparseInitializer()) > 0 {
		return whole("it has sparse initializers")
	}
	// def: the node computing each value (-1: a graph input); read: the
	// last node reading it; last: the same, or n for a graph output or an
	// extra value.
	def, last, read := map[string]int{}, map[string]int{}, map[string]int{}
	for _, v := range g.GetInput() {
		if inits[v.GetName()] == nil {
			def[v.GetName()] = -1
		}
	}
	for i, nd := range nodes {
		var bad string
		nodeNeeds(nd, func(name string) {
			if inits[name] != nil {
				return
			}
			d, ok := def[name]
			if !ok || d >= i {
				bad = name
				return
			}
			last[name] = max(last[name], i)
			read[name] = max(read[name], i)
		})
		if bad != "" {
			return whole("node %q reads %q before any node computes it (the graph is not in topological order)", nd.GetName(), bad)
		}
		for _, o := range nd.GetOutput() {
			if o == "" {
				continue
			}
			if _, dup := def[o]; dup || inits[o] != nil {
				return whole("value %q is defined twice", o)
			}
			def[o] = i
		}
	}
	for _, o := range g.GetOutput() {
		if d, ok := def[o.GetName()]; !ok || d < 0 {
			return whole("graph output %q is not computed by a node", o.GetName())
		}
		if _, ok := consts[o.GetName()]; ok {
			return whole("graph output %q is a Constant", o.GetName())
		}
		last[o.GetName()] = n
	}
	for _, v := range extra {
		if d, ok := def[v]; ok && d >= 0 {
			last[v] = n
		}
	}
	types := valueTypes(g, inits)
	// live[c]: the values crossing a cut before node c (computed by a node
	// before c, read by a node at or after c); ok[c]: each has a known
	// element type. Graph outputs and extra values are stored once by the
	// piece that computes them and do not count.
	// Counted by differences, then summed: linear in the graph's size.
	live := make([]int, n+2)
	untyped := make([]int, n+2)
	for name, d := range def {
		if d < 0 {
			continue // graph inputs come from the samples, typed
		}
		if _, c := consts[name]; c {
			continue
		}
		l, isRead := read[name]
		if !isRead {
			continue
		}
		live[d+1]++
		live[l+1]--
		if !cuttable(types[name]) {
			untyped[d+1]++
			untyped[l+1]--
		}
	}
	ok := make([]bool, n+1)
	for c := 1; c <= n; c++ {
		live[c] += live[c-1]
		untyped[c] += untyped[c-1]
	}
	for c := range ok {
		ok[c] = untyped[c] == 0
	}
	// nonConst[c]: the nodes before c that are not Constants.
	nonConst := make([]int, n+1)
	for i := range nodes {
		nonConst[i+1] = nonConst[i]
		if !isConst(i) {
			nonConst[i+1]++
		}
	}
	// Greedy: fill a piece up to the budget, then cut where fewest tensors
	// cross (the latest such point), and start the next piece there.
	var cuts []int
	for from := 0; from < n; {
		seen := map[string]bool{}
		var w int64
		to := from
		for ; to < n; to++ {
			add := subWeight[to]
			nodeNeeds(nodes[to], func(name string) {
				if c, isFree := free(name); isFree && !seen[name] {
					add += c
				}
			})
			if to > from && w+add > budget {
				break
			}
			nodeNeeds(nodes[to], func(name string) {
				if _, isFree := free(name); isFree {
					seen[name] = true
				}
			})
			w += add
		}
		if to == n {
			break
		}
		best := -1
		for c := to; c > from; c-- {
			if nonConst[c] == nonConst[from] {
				break // nothing but Constants before c: no piece
			}
			if nonConst[c] == nonConst[n] {
				continue // nothing but Constants after c
			}
			if ok[c] && live[c] <= maxCutLive && (best < 0 || live[c] < live[best]) {
				best = c
			}
		}
		if best < 0 {
			return whole("no point between nodes %d (%q) and %d (%q) where at most %d tensors of known type cross", from, nodes[from].GetName(), to, nodes[to].GetName(), maxCutLive)
		}
		cuts = append(cuts, best)
		from = best
	}
	if len(cuts) == 0 {
		return whole("no cut point")
	}
	p.types, p.read = types, read
	p.extra = map[string]bool{}
	for _, v := range extra {
		p.extra[v] = true
	}
	bounds := append(append([]int{0}, cuts...), n)
	for k := 0; k+1 < len(bounds); k++ {
		pc := piece{from: bounds[k], to: bounds[k+1]}
		seenIn, seenFree := map[string]bool{}, map[string]bool{}
		var constNodes []int
		for i := pc.from; i < pc.to; i++ {
			if isConst(i) {
				continue // taken where it is read
			}
			pc.nodes = append(pc.nodes, i)
			pc.weight += subWeight[i]
			nodeNeeds(nodes[i], func(name string) {
				if c, isFree := free(name); isFree {
					if !seenFree[name] {
						seenFree[name] = true
						pc.weight += c
						if t := inits[name]; t != nil {
							pc.inits = append(pc.inits, t)
						} else {
							constNodes = append(constNodes, consts[name])
						}
					}
					return
				}
				if def[name] < pc.from && !seenIn[name] {
					seenIn[name] = true
					pc.inputs = append(pc.inputs, name)
				}
			})
		}
		sort.Ints(constNodes)
		pc.nodes = append(constNodes, pc.nodes...)
		for _, i := range pc.nodes {
			if isConst(i) {
				continue
			}
			for _, o := range nodes[i].GetOutput() {
				if o != "" && last[o] >= pc.to {
					pc.outputs = append(pc.outputs, o)
				}
			}
		}
		if len(pc.outputs) == 0 {
			// Nothing it computes is read (dead nodes, which onnxruntime
			// would prune): no piece.
			continue
		}
		p.parts = append(p.parts, pc)
		if pc.weight > budget && p.note == "" {
			// Only a piece's first node may take it over the budget (the
			// greedy fill stops before any other would): a node that
			// reads more than the budget alone cannot be cut smaller.
			first := pc.from
			for first+1 < pc.to && isConst(first) {
				first++
			}
			p.note = fmt.Sprintf("piece %d holds %d MiB of weights, over the %d MiB budget: node %q reads that much alone", len(p.parts), pc.weight>>20, budget>>20, nodes[first].GetName())
		}
	}
	return p, nil
}

// graphWeight is the weight a subgraph holds: its initializers and
// Constants, and its own subgraphs'.
func graphWeight(g *onnxpb.GraphProto) int64 {
	var w int64
	for _, t := range g.GetInitializer() {
		w += weightCost(t)
	}
	for _, nd := range g.GetNode() {
		for _, a := range nd.GetAttribute() {
			if a.GetT() != nil {
				w += weightCost(a.GetT())
			}
			if a.GetG() != nil {
				w += graphWeight(a.GetG())
			}
			for _, sg := range a.GetGraphs() {
				w += graphWeight(sg)
			}
		}
	}
	return w
}

// cuttable: a value of this element type may cross a cut (0: unknown).
func cuttable(t int32) bool {
	switch onnxpb.TensorProto_DataType(t) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_DOUBLE,
		onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT16,
		onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32,
		onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_BOOL:
		return true
	}
	return false
}

// sameAsFirst are operators whose first output has the element type of
// their first input.
var sameAsFirst = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Neg": true, "Abs": true,
	"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "Erf": true, "Gelu": true,
	"Exp": true, "Log": true, "Sqrt": true, "Reciprocal": true, "Softmax": true, "LogSoftmax": true,
	"LayerNormalization": true, "BatchNormalization": true, "InstanceNormalization": true,
	"SimplifiedLayerNormalization": true, "SkipLayerNormalization": true, "FastGelu": true, "BiasGelu": true,
	"MatMul": true, "Gemm": true, "Conv": true, "ConvTranspose": true, "MaxPool": true, "AveragePool": true,
	"GlobalAveragePool": true, "GlobalMaxPool": true, "Transpose": true, "Reshape": true,
	"Flatten": true, "Squeeze": true, "Unsqueeze": true, "Concat": true, "Slice": true, "Gather": true,
	"Split": true, "Expand": true, "Tile": true, "Pad": true, "Resize": true, "Identity": true,
	"Dropout": true, "Clip": true, "HardSigmoid": true, "HardSwish": true, "Max": true, "Min": true,
	"ReduceMean": true, "ReduceSum": true, "ReduceMax": true, "ReduceMin": true, "Sum": true, "Mean": true,
	"Floor": true, "Ceil": true, "Round": true, "Sign": true, "Sin": true, "Cos": true, "Elu": true,
	"Selu": true, "Softplus": true, "PRelu": true, "DepthToSpace": true, "SpaceToDepth": true,
	"MatMulNBits": true, "DynamicQuantizeMatMul": true, "CumSum": true, "Mod": true,
}

// valueTypes is the element type of every value whose type the graph
// declares or a small table of operators implies; a value it does not
// know is never cut at.
func valueTypes(g *onnxpb.GraphProto, inits map[string]*onnxpb.TensorProto) map[string]int32 {
	types := map[string]int32{}
	declare := func(vs []*onnxpb.ValueInfoProto) {
		for _, v := range vs {
			if tt := v.GetType().GetTensorType(); tt != nil && tt.GetElemType() != 0 {
				types[v.GetName()] = tt.GetElemType()
			}
		}
	}
	declare(g.GetInput())
	declare(g.GetOutput())
	declare(g.GetValueInfo())
	for name, t := range inits {
		types[name] = t.GetDataType()
	}
	in := func(n *onnxpb.NodeProto, i int) int32 {
		if i < len(n.GetInput()) {
			return types[n.GetInput()[i]]
		}
		return 0
	}
	set := func(n *onnxpb.NodeProto, i int, t int32) {
		if i < len(n.GetOutput()) && t != 0 && types[n.GetOutput()[i]] == 0 {
			types[n.GetOutput()[i]] = t
		}
	}
	const (
		f32   = int32(onnxpb.TensorProto_FLOAT)
		u8    = int32(onnxpb.TensorProto_UINT8)
		i32   = int32(onnxpb.TensorProto_INT32)
		i64   = int32(onnxpb.TensorProto_INT64)
		boolT = int32(onnxpb.TensorProto_BOOL)
	)
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		switch {
		case sameAsFirst[op]:
			t := in(n, 0)
			for i := range n.GetOutput() {
				if i == 0 || op == "Split" {
					set(n, i, t)
				}
			}
		case op == "Cast":
			for _, a := range n.GetAttribute() {
				if a.GetName() == "to" {
					set(n, 0, int32(a.GetI()))
				}
			}
		case op == "Constant":
			for _, a := range n.GetAttribute() {
				if a.GetT() != nil {
					set(n, 0, a.GetT().GetDataType())
				}
			}
		case op == "If":
			// Each output has the type the branches declare.
			for _, a := range n.GetAttribute() {
				if a.GetName() == "then_branch" {
					for i, o := range a.GetG().GetOutput() {
						set(n, i, o.GetType().GetTensorType().GetElemType())
					}
				}
			}
		case op == "Where":
			set(n, 0, in(n, 1))
		case op == "Shape" || op == "Size" || op == "ArgMax" || op == "ArgMin" || op == "NonZero":
			set(n, 0, i64)
		case op == "Equal" || op == "Less" || op == "Greater" || op == "LessOrEqual" || op == "GreaterOrEqual" || op == "Not" || op == "And" || op == "Or":
			set(n, 0, boolT)
		case op == "DynamicQuantizeLinear":
			set(n, 0, u8)
			set(n, 1, f32)
			set(n, 2, u8)
		case op == "MatMulInteger":
			set(n, 0, i32)
		case op == "DequantizeLinear":
			set(n, 0, in(n, 1))
		case op == "QuantizeLinear" || op == "QLinearMatMul":
			zp := 2
			if op == "QLinearMatMul" {
				zp = 7
			}
			if t := in(n, zp); t != 0 {
				set(n, 0, t)
			} else {
				set(n, 0, u8)
			}
		}
	}
	return types
}

// build returns piece k as a model in memory: its nodes, its initializers
// as references into the original files (locations relative to the
// model's directory, which the session is given), and its inputs and
// outputs typed. A value crossing a cut travels as crossName(value):
// unsqueezed to rank+1, because onnxruntime_go cannot hand back a scalar
// it allocated, and a float16 one as float32, because it cannot allocate a
// float16 output of unknown shape; both are undone, exactly, on the other
// side.
func (p *piecePlan) build(k int) ([]byte, error) {
	pc := p.parts[k]
	g := p.m.Graph()
	declared := map[string]*onnxpb.ValueInfoProto{}
	for _, v := range g.GetInput() {
		declared[v.GetName()] = v
	}
	isOutput := map[string]*onnxpb.ValueInfoProto{}
	for _, v := range g.GetOutput() {
		isOutput[v.GetName()] = v
	}
	ng := &onnxpb.GraphProto{Name: proto.String(fmt.Sprintf("%s piece %d of %d", g.GetName(), k+1, len(p.parts)))}
	f16, f32 := int32(onnxpb.TensorProto_FLOAT16), int32(onnxpb.TensorProto_FLOAT)
	typed := func(name string, t int32) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(t)}}}}
	}
	node := func(op, from, to string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(to + "_" + op), OpType: proto.String(op), Input: []string{from}, Output: []string{to}, Attribute: attrs}
	}
	cast := func(from, to string, t int32) *onnxpb.NodeProto {
		return node("Cast", from, to, &onnxpb.AttributeProto{Name: proto.String("to"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(int64(t))})
	}
	// Unsqueeze and Squeeze on axis 0: an attribute before opset 13, an
	// input (a Constant here) from 13.
	axes := crossSuffix + "axis0"
	axisNodeAdded := false
	reshape := func(op, from, to string) []*onnxpb.NodeProto {
		if p.opset() < 13 {
			return []*onnxpb.NodeProto{node(op, from, to, &onnxpb.AttributeProto{Name: proto.String("axes"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{0}})}
		}
		var out []*onnxpb.NodeProto
		if !axisNodeAdded {
			axisNodeAdded = true
			out = append(out, &onnxpb.NodeProto{Name: proto.String(axes), OpType: proto.String("Constant"), Output: []string{axes},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: &onnxpb.TensorProto{
					Name: proto.String(axes), Dims: []int64{1}, DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: []int64{0}}}}})
		}
		n := node(op, from, to)
		n.Input = append(n.Input, axes)
		return append(out, n)
	}
	for _, name := range pc.inputs {
		if v := declared[name]; v != nil {
			ng.Input = append(ng.Input, v)
			continue
		}
		if v := isOutput[name]; v != nil {
			ng.Input = append(ng.Input, typed(name, v.GetType().GetTensorType().GetElemType()))
			continue
		}
		t := p.types[name]
		if t == f16 {
			ng.Input = append(ng.Input, typed(p.crossName(name), f32))
			ng.Node = append(ng.Node, reshape("Squeeze", p.crossName(name), name+f32Suffix)...)
			ng.Node = append(ng.Node, cast(name+f32Suffix, name, f16))
			continue
		}
		ng.Input = append(ng.Input, typed(p.crossName(name), t))
		ng.Node = append(ng.Node, reshape("Squeeze", p.crossName(name), name)...)
	}
	for _, i := range pc.nodes {
		ng.Node = append(ng.Node, g.GetNode()[i])
	}
	for _, name := range pc.outputs {
		if v := isOutput[name]; v != nil {
			ng.Output = append(ng.Output, v)
			continue
		}
		if p.readLater(name, k) {
			from := name
			t := p.types[name]
			if t == f16 {
				ng.Node = append(ng.Node, cast(name, name+f32Suffix, f32))
				from, t = name+f32Suffix, f32
			}
			ng.Node = append(ng.Node, reshape("Unsqueeze", from, p.crossName(name))...)
			ng.Output = append(ng.Output, typed(p.crossName(name), t))
		}
		if p.extra[name] {
			// Calibration's activations: float, never scalars.
			ng.Output = append(ng.Output, typed(name, f32))
		}
	}
	for _, t := range pc.inits {
		ref, err := p.reference(t)
		if err != nil {
			return nil, err
		}
		ng.Initializer = append(ng.Initializer, ref)
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   p.m.Proto.IrVersion,
		OpsetImport: p.m.Proto.GetOpsetImport(),
		Functions:   p.m.Proto.GetFunctions(),
		Graph:       ng,
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		return nil, fmt.Errorf("piece %d of %s: %w", k+1, p.m.Path, err)
	}
	return b, nil
}

// opset is the model's version of the default ONNX domain.
func (p *piecePlan) opset() int64 {
	for _, o := range p.m.Proto.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// reference is an initializer as the piece holds it: external data stays
// where it is, raw_data the parser left in the .onnx becomes a reference to
// its bytes there, and small inline data stays inline.
func (p *piecePlan) reference(t *onnxpb.TensorProto) (*onnxpb.TensorProto, error) {
	span, lazy := p.m.Embedded[t]
	if !lazy {
		return t, nil
	}
	loc, err := filepath.Rel(p.m.Dir, span.File)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	r := &onnxpb.TensorProto{
		Name:         t.Name,
		Dims:         t.GetDims(),
		DataType:     t.DataType,
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(filepath.ToSlash(loc))},
			{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(span.Offset, 10))},
			{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(span.Length, 10))},
		},
	}
	return r, nil
}

// crossName is the name a value crossing a cut has in the pieces' inputs
// and outputs (graph outputs keep theirs).
func (p *piecePlan) crossName(name string) string {
	if p.isOutput(name) {
		return name
	}
	return name + crossSuffix
}

// readLater: a node after piece k reads the value.
func (p *piecePlan) readLater(name string, k int) bool {
	r, ok := p.read[name]
	return ok && r >= p.parts[k].to
}

func (p *piecePlan) isOutput(name string) bool {
	for _, o := range p.m.Graph().GetOutput() {
		if o.GetName() == name {
			return true
		}
	}
	return false
}
