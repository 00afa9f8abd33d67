package quantize

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// actParams are the quantized form of one calibrated activation.
type actParams struct {
	q, scale, zp string // value names: the uint8 tensor, its scale and zero point
}

// hasRange reports whether int8-static has a calibrated range for value v.
func (r *rewriter) hasRange(v string) bool {
	_, ok := r.opts.Activations[v]
	return ok
}

// qdqDomain is where QuantizeLinear/DequantizeLinear come from: the
// standard ops from opset 13 (per-axis scales) or 10 (per tensor), else
// onnxruntime's contrib ops, so the model's opset is never raised.
func (r *rewriter) qdqDomain(perAxis bool) string {
	if r.opset >= 13 || (r.opset >= 10 && !perAxis) {
		return ""
	}
	r.extraD[msDomain] = 1
	return msDomain
}

// scaleZPInits adds the scale (float) and uint8 zero point of a range.
func (r *rewriter) scaleZPInits(base string, rg Range) (scale, zp string) {
	s, z := scaleZP(rg.Min, rg.Max, true, false)
	scale = r.scalarInit(base+"_scale", s)
	zp = r.unique(base + "_zero_point")
	r.g.Initializer = append(r.g.Initializer, &onnxpb.TensorProto{Name: proto.String(zp), DataType: proto.Int32(onnx.Uint8), RawData: []byte{byte(z)}})
	return scale, zp
}

// quantizeAct returns activation a in uint8 with its calibrated scale; the
// QuantizeLinear node is added (to nodes) once per activation, before its
// first reader, and shared by the others.
func (r *rewriter) quantizeAct(a string, nodes *[]*onnxpb.NodeProto) actParams {
	if p, ok := r.acts[a]; ok {
		return p
	}
	p := actParams{q: r.unique(a + "_quantized")}
	p.scale, p.zp = r.scaleZPInits(a, r.opts.Activations[a])
	*nodes = append(*nodes, node("QuantizeLinear", r.qdqDomain(false), r.unique(a+"_QuantizeLinear"), []string{a, p.scale, p.zp}, []string{p.q}))
	r.acts[a] = p
	return p
}

// emitStatic writes the static pattern of one MatMul/Gemm whose A is
// calibrated, producing mmOut (the product before Gemm's alpha and C).
func (r *rewriter) emitStatic(base, a, y, mmOut string, qw *qweight) []*onnxpb.NodeProto {
	var nodes []*onnxpb.NodeProto
	ap := r.quantizeAct(a, &nodes)
	if r.opts.Form == FormQLinear && mmOut == y && r.hasRange(y) && r.opset >= 10 {
		ys, yzp := r.scaleZPInits(base+"_Y", r.opts.Activations[y])
		yq := r.unique(base + "_Y_quantized")
		return append(nodes,
			node("QLinearMatMul", "", r.unique(base+"_QLinearMatMul"), []string{ap.q, ap.scale, ap.zp, qw.q, qw.scale, qw.zp, ys, yzp}, []string{yq}),
			node("DequantizeLinear", r.qdqDomain(false), r.unique(base+"_Y_DequantizeLinear"), []string{yq, ys, yzp}, []string{y}))
	}
	adq := r.unique(a + "_dequantized")
	if _, ok := r.actDQ[a]; ok {
		adq = r.actDQ[a]
	} else {
		nodes = append(nodes, node("DequantizeLinear", r.qdqDomain(false), r.unique(a+"_DequantizeLinear"), []string{ap.q, ap.scale, ap.zp}, []string{adq}))
		r.actDQ[a] = adq
	}
	wdq := r.unique(qw.name + "_dequantized")
	var attrs []*onnxpb.AttributeProto
	if qw.perChannel {
		attrs = append(attrs, intAttr("axis", 1))
	}
	return append(nodes,
		node("DequantizeLinear", r.qdqDomain(qw.perChannel), r.unique(qw.name+"_DequantizeLinear"), []string{qw.q, qw.scale, qw.zp}, []string{wdq}, attrs...),
		node("MatMul", "", r.unique(base+"_MatMul"), []string{adq, wdq}, []string{mmOut}))
}

// PlannedNode is a node Quantize would quantize with the given options.
type PlannedNode struct {
	Node, OpType string
	Activation   string // the A input
	Output       string // the node's output
	Weight       string
	K, N         int64
}

// Plan lists the nodes Quantize would quantize with opts, without writing
// anything: what static calibration must measure, and what a search may
// keep in float.
func Plan(ctx context.Context, in string, opts Options) ([]PlannedNode, []Skip, error) {
	if err := opts.validate(); err != nil {
		return nil, nil, err
	}
	m, err := onnx.Open(in)
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	r := &rewriter{ctx: ctx, m: m, opts: opts, sum: &Summary{}}
	r.prepare()
	if opts.Mode == ModeFP16 {
		return nil, nil, nil
	}
	byWeight, order := r.selectWeights()
	var plan []PlannedNode
	for _, w := range order {
		for _, u := range byWeight[w] {
			d := r.consts[w].t.GetDims()
			k, n := d[0], d[1]
			if u.trans {
				k, n = n, k
			}
			plan = append(plan, PlannedNode{Node: u.n.GetName(), OpType: u.n.GetOpType(), Activation: u.n.GetInput()[0],
				Output: u.n.GetOutput()[0], Weight: w, K: k, N: n})
		}
	}
	return plan, r.sum.Skipped, nil
}
