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

// use is one MatMul or Gemm that reads a weight as its B input.
type use struct {
	n     *onnxpb.NodeProto
	trans bool // Gemm transB=1: the weight is stored [N, K]
}

// qweight is a quantized weight and the tensors that replace it.
type qweight struct {
	name             string
	c                *constant
	mat              matrix
	q, scale, zp     string // initializer names
	perChannel       bool
	nScales          int64
	scales, zps      []float32 // filled while the weight is written
	zp4              []byte    // int4 zero points, one per block (0..15)
	k, n             int64
	blocks, blobSize int64 // int4
	mode             Mode  // int8 or int4 (Options.NodeModes)
}

// matmuls rewrites MatMul (constant B) and Gemm nodes of the main graph
// into the int8 or int4 pattern. Subgraphs are left alone.
func (r *rewriter) matmuls() error {
	byWeight, order := r.selectWeights()
	rewrites := map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}
	var quantized []string
	for _, w := range order {
		us := byWeight[w]
		mode := r.opts.Mode
		if m, ok := r.opts.NodeModes[us[0].n.GetName()]; ok {
			mode = m
		}
		qw := r.newWeight(w, r.consts[w], us[0].trans, mode)
		for _, u := range us {
			rewrites[u.n] = r.emit(u, qw)
		}
		r.sum.Quantized = append(r.sum.Quantized, w)
		quantized = append(quantized, w)
	}
	if len(rewrites) == 0 {
		return nil
	}
	var nodes []*onnxpb.NodeProto
	for _, n := range r.g.GetNode() {
		if rw, ok := rewrites[n]; ok {
			nodes = append(nodes, rw...)
		} else {
			nodes = append(nodes, n)
		}
	}
	r.g.Node = nodes
	for _, w := range quantized {
		r.dropConstant(w)
	}
	return nil
}

// selectWeights finds the weights to quantize (in graph order) and the
// nodes reading each; every other candidate is recorded as skipped.
func (r *rewriter) selectWeights() (map[string][]use, []string) {
	byWeight := map[string][]use{}
	var order []string
	for _, n := range r.g.GetNode() {
		op := n.GetOpType()
		if (op != "MatMul" && op != "Gemm") || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
			continue
		}
		if ok, why := r.opts.wanted(n); !ok {
			r.skip(n, "%s", why)
			continue
		}
		if len(n.GetInput()) < 2 || len(n.GetOutput()) != 1 {
			r.skip(n, "unexpected inputs or outputs")
			continue
		}
		c := r.consts[n.GetInput()[1]]
		switch {
		case c == nil:
			r.skip(n, "B is not a constant")
			continue
		case c.t.GetDataType() != onnx.Float:
			r.skip(n, "B is %s, not FLOAT", onnxpb.TensorProto_DataType(c.t.GetDataType()))
			continue
		case len(c.t.GetDims()) != 2:
			r.skip(n, "B has %d dimensions, not 2", len(c.t.GetDims()))
			continue
		}
		if elems := c.t.GetDims()[0] * c.t.GetDims()[1]; elems < r.opts.MinWeightElems || elems == 0 {
			r.skip(n, "weight has %d elements, under --min-weight-size %d", elems, r.opts.MinWeightElems)
			continue
		}
		if ok, why := r.opts.pays(n, c.t.GetDims()); !ok {
			r.skip(n, "%s", why)
			continue
		}
		u := use{n: n}
		if op == "Gemm" {
			if attrInt(n, "transA", 0) != 0 {
				r.skip(n, "Gemm with transA=1")
				continue
			}
			u.trans = attrInt(n, "transB", 0) != 0
		}
		w := n.GetInput()[1]
		if _, seen := byWeight[w]; !seen {
			order = append(order, w)
		}
		byWeight[w] = append(byWeight[w], u)
	}
	var kept []string
	for _, w := range order {
		us := byWeight[w]
		same := true
		for _, u := range us {
			same = same && u.trans == us[0].trans
		}
		if r.uses[w] != len(us) || !same {
			for _, u := range us {
				r.skip(u.n, "weight %q is also read by other nodes", w)
			}
			delete(byWeight, w)
			continue
		}
		kept = append(kept, w)
	}
	return byWeight, kept
}

// newWeight plans the tensors replacing weight w and registers the
// functions that stream them into the output.
func (r *rewriter) newWeight(w string, c *constant, trans bool, mode Mode) *qweight {
	d := c.t.GetDims()
	k, n := d[0], d[1]
	if trans {
		k, n = n, k
	}
	qw := &qweight{name: w, c: c, k: k, n: n, mat: matrix{K: k, N: n, trans: trans}, mode: mode}
	r.sum.InputDataBytes += 4 * k * n
	switch mode {
	case ModeInt4:
		bs := int64(r.opts.BlockSize)
		qw.blocks = (k + bs - 1) / bs
		qw.blobSize = bs / 2
		qw.q = r.unique(w + "_Q4")
		qw.scale = r.unique(w + "_scales")
		r.srcOf[r.addInit(qw.q, onnx.Uint8, []int64{n, qw.blocks, qw.blobSize}, func(out io.Writer) error { return r.writeInt4(qw, out) })] = c.t
		r.addInit(qw.scale, onnx.Float, []int64{n * qw.blocks}, func(out io.Writer) error { return writeFloats(out, qw.scales) })
		if !r.opts.Symmetric {
			qw.zp = r.unique(w + "_zero_points")
			r.addInit(qw.zp, onnx.Uint8, []int64{n * ((qw.blocks + 1) / 2)}, func(out io.Writer) error { return writeNibbles(out, qw.zp4, n, qw.blocks) })
		}
	default:
		qw.perChannel = r.opts.PerChannel
		var sdims []int64
		if qw.perChannel {
			sdims = []int64{n}
		}
		wt := onnx.Int8
		if r.opts.Uint8 {
			wt = onnx.Uint8
		}
		qw.q = r.unique(w + "_quantized")
		qw.scale = r.unique(w + "_scale")
		qw.zp = r.unique(w + "_zero_point")
		r.srcOf[r.addInit(qw.q, wt, []int64{k, n}, func(out io.Writer) error { return r.writeInt8(qw, out) })] = c.t
		r.addInit(qw.scale, onnx.Float, sdims, func(out io.Writer) error { return writeFloats(out, qw.scales) })
		r.addInit(qw.zp, wt, sdims, func(out io.Writer) error {
			b := make([]byte, len(qw.zps))
			for i, z := range qw.zps {
				b[i] = byte(int8(z))
				if r.opts.Uint8 {
					b[i] = byte(uint8(z))
				}
			}
			_, err := out.Write(b)
			return err
		})
	}
	return qw
}

// emit returns the nodes replacing one MatMul/Gemm.
func (r *rewriter) emit(u use, qw *qweight) []*onnxpb.NodeProto {
	n := u.n
	base := baseName(n)
	a, y := n.GetInput()[0], n.GetOutput()[0]
	var nodes []*onnxpb.NodeProto
	// Gemm's alpha and beta·C become explicit Mul and Add nodes.
	mmOut := y
	var bias, alpha string
	if n.GetOpType() == "Gemm" {
		if al := attrFloat(n, "alpha", 1); al != 1 {
			alpha = r.scalarInit(base+"_alpha", al)
		}
		if len(n.GetInput()) > 2 && n.GetInput()[2] != "" {
			bias = n.GetInput()[2]
			if be := attrFloat(n, "beta", 1); be != 1 {
				scaled := r.unique(base + "_beta_C")
				nodes = append(nodes, node("Mul", "", scaled, []string{bias, r.scalarInit(base+"_beta", be)}, []string{scaled}))
				bias = scaled
			}
		}
		if alpha != "" || bias != "" {
			mmOut = r.unique(base + "_matmul")
		}
	}
	switch {
	case qw.mode == ModeInt4:
		r.extraD[msDomain] = 1
		in := []string{a, qw.q, qw.scale}
		if qw.zp != "" {
			in = append(in, qw.zp)
		}
		attrs := []*onnxpb.AttributeProto{intAttr("K", qw.k), intAttr("N", qw.n), intAttr("bits", 4), intAttr("block_size", int64(r.opts.BlockSize))}
		if r.opts.AccuracyLevel > 0 {
			attrs = append(attrs, intAttr("accuracy_level", int64(r.opts.AccuracyLevel)))
		}
		nodes = append(nodes, node("MatMulNBits", msDomain, r.unique(base+"_MatMulNBits"), in, []string{mmOut}, attrs...))
	case r.hasRange(a):
		nodes = append(nodes, r.emitStatic(base, a, y, mmOut, qw)...)
	case r.opset < 11:
		// DynamicQuantizeLinear needs opset 11; onnxruntime's contrib op
		// does the same without raising the model's opset.
		r.extraD[msDomain] = 1
		nodes = append(nodes, node("DynamicQuantizeMatMul", msDomain, r.unique(base+"_DynamicQuantizeMatMul"),
			[]string{a, qw.q, qw.scale, qw.zp}, []string{mmOut}))
	default:
		aq, as, az := r.unique(base+"_A_quantized"), r.unique(base+"_A_scale"), r.unique(base+"_A_zero_point")
		i32, f32, sc := r.unique(base+"_output_quantized"), r.unique(base+"_output_quantized_cast"), r.unique(base+"_scales_mul")
		nodes = append(nodes,
			node("DynamicQuantizeLinear", "", r.unique(base+"_DynamicQuantizeLinear"), []string{a}, []string{aq, as, az}),
			node("MatMulInteger", "", r.unique(base+"_MatMulInteger"), []string{aq, qw.q, az, qw.zp}, []string{i32}),
			node("Cast", "", r.unique(base+"_Cast"), []string{i32}, []string{f32}, intAttr("to", int64(onnx.Float))),
			node("Mul", "", r.unique(base+"_scales_mul"), []string{as, qw.scale}, []string{sc}),
			node("Mul", "", r.unique(base+"_output_scale_mul"), []string{f32, sc}, []string{mmOut}),
		)
	}
	switch {
	case alpha != "" && bias != "":
		scaled := r.unique(base + "_alpha_AB")
		nodes = append(nodes,
			node("Mul", "", scaled, []string{mmOut, alpha}, []string{scaled}),
			node("Add", "", r.unique(base+"_bias_add"), []string{scaled, bias}, []string{y}))
	case alpha != "":
		nodes = append(nodes, node("Mul", "", r.unique(base+"_alpha_mul"), []string{mmOut, alpha}, []string{y}))
	case bias != "":
		nodes = append(nodes, node("Add", "", r.unique(base+"_bias_add"), []string{mmOut, bias}, []string{y}))
	}
	return nodes
}

func (r *rewriter) scalarInit(base string, v float32) string {
	name := r.unique(base)
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(onnx.Float), RawData: binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))}
	r.g.Initializer = append(r.g.Initializer, t)
	return name
}

func writeFloats(out io.Writer, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	_, err := out.Write(b)
	return err
}

// writeInt8 streams the weight twice, in row chunks: once for the ranges
// (per tensor or per column), once to quantize into [K, N] order. A weight
// that fits one chunk is read once.
func (r *rewriter) writeInt8(qw *qweight, out io.Writer) error {
	d, err := r.weightData(qw.c)
	if err != nil {
		return err
	}
	defer d.Close()
	qw.mat.r = d
	qw.mat.file, qw.mat.off, _ = d.File()
	m := &qw.mat
	defer m.release()
	lines := m.chunkLines(true, r.opts.ChunkBytes)
	if lines < m.K && lines%2 == 1 {
		// Whole row pairs in every chunk: the pair bound is checked
		// within a chunk (portable.go).
		lines = max(2, lines-1)
	}
	nStats := int64(1)
	if qw.perChannel {
		nStats = m.N
	}
	lo, hi := make([]float32, nStats), make([]float32, nStats)
	// The int8 weights of an int4 run (Options.NodeModes) are portable too.
	o := r.opts
	o.Mode = ModeInt8
	rng := o.Range()
	signed := !r.opts.Uint8
	var pos, neg []float32
	if signed && rng == RangePortable {
		pos, neg = make([]float32, nStats), make([]float32, nStats)
	}
	var v []float32
	for k0 := int64(0); k0 < m.K; k0 += lines {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		k1 := min(m.K, k0+lines)
		if v, err = r.readLines(m, true, k0, k1); err != nil {
			return fmt.Errorf("weight %q: %w", qw.name, err)
		}
		var bad bool
		if qw.perChannel {
			bad, err = columnRanges(v, int(m.N), lo, hi)
		} else {
			var l, h float32
			l, h, bad, err = rangeOf(v)
			lo[0], hi[0] = min(lo[0], l), max(hi[0], h)
		}
		if err != nil {
			return fmt.Errorf("weight %q: %w", qw.name, err)
		}
		if bad {
			return fmt.Errorf("weight %q has NaN or Inf values (rows %d..%d): exclude its node with --exclude-nodes", qw.name, k0, k1)
		}
		if pos != nil {
			if err := pairPeaks(v, int(m.N), pos, neg); err != nil {
				return fmt.Errorf("weight %q: %w", qw.name, err)
			}
		}
	}
	qmin, qmax := qrange(r.opts.Uint8, r.opts.ReduceRange)
	qw.scales, qw.zps = make([]float32, nStats), make([]float32, nStats)
	inv := make([]float32, nStats)
	narrowed := false
	for j := range lo {
		qw.scales[j], qw.zps[j] = scaleZP(lo[j], hi[j], r.opts.Uint8, r.opts.ReduceRange)
		if pos != nil {
			if s, wide := portableScale(max(-lo[j], hi[j]), pos[j], neg[j]); wide {
				qw.scales[j], narrowed = s, true
			}
		}
		inv[j] = 1 / qw.scales[j]
	}
	if narrowed {
		r.sum.Narrowed = append(r.sum.Narrowed, qw.name)
	}
	var overflows int64
	for k0 := int64(0); k0 < m.K; k0 += lines {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		k1 := min(m.K, k0+lines)
		if lines < m.K { // else the only chunk is still in v
			if v, err = r.readLines(m, true, k0, k1); err != nil {
				return fmt.Errorf("weight %q: %w", qw.name, err)
			}
		}
		r.qbuf = growBytes(r.qbuf, int64(len(v)))
		if err := quantizeTo(r.qbuf, v, inv, qw.zps, qmin, qmax); err != nil {
			return fmt.Errorf("weight %q: %w", qw.name, err)
		}
		switch {
		case !signed:
		case rng == RangePortable:
			r.sum.PairsAdjusted += fixPairs(r.qbuf, int(m.N))
		default:
			overflows += PairOverflows(r.qbuf, int(m.N))
		}
		if _, err := out.Write(r.qbuf); err != nil {
			return err
		}
		r.progress(4 * int64(len(v)))
	}
	if overflows > 0 {
		r.sum.NeedsVNNI = append(r.sum.NeedsVNNI, qw.name)
	}
	return nil
}

// readLines reads logical lines of m into the rewriter's reused buffers.
func (r *rewriter) readLines(m *matrix, byRow bool, i0, i1 int64) ([]float32, error) {
	v, fbuf, scratch, err := m.read(byRow, i0, i1, r.fbuf, r.scratch)
	r.fbuf, r.scratch = fbuf, scratch
	return v, err
}

// writeInt4 streams the weight in column chunks (rows of Bᵀ) and writes
// MatMulNBits' [N, blocks, block/2] layout: two 4-bit codes per byte, the
// lower K index in the low nibble; K is padded to whole blocks.
func (r *rewriter) writeInt4(qw *qweight, out io.Writer) error {
	d, err := r.weightData(qw.c)
	if err != nil {
		return err
	}
	defer d.Close()
	qw.mat.r = d
	qw.mat.file, qw.mat.off, _ = d.File()
	m := &qw.mat
	defer m.release()
	bs := int64(r.opts.BlockSize)
	lines := m.chunkLines(false, r.opts.ChunkBytes)
	qw.scales = make([]float32, m.N*qw.blocks)
	if !r.opts.Symmetric {
		qw.zp4 = make([]byte, m.N*qw.blocks)
	}
	blob := make([]byte, qw.blocks*qw.blobSize)
	codes := make([]byte, bs)
	for n0 := int64(0); n0 < m.N; n0 += lines {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		n1 := min(m.N, n0+lines)
		buf, err := r.readLines(m, false, n0, n1)
		if err != nil {
			return fmt.Errorf("weight %q: %w", qw.name, err)
		}
		var werr error
		if err := guard(func() { werr = r.int4Columns(qw, buf, n0, n1, blob, codes, out) }); err != nil {
			return fmt.Errorf("weight %q: %w", qw.name, err)
		}
		if werr != nil {
			return werr
		}
		r.progress(4 * int64(len(buf)))
	}
	return nil
}

// int4Columns quantizes columns [n0, n1) of a chunk and writes their blocks.
func (r *rewriter) int4Columns(qw *qweight, buf []float32, n0, n1 int64, blob, codes []byte, out io.Writer) error {
	m, bs := &qw.mat, int64(r.opts.BlockSize)
	for n := n0; n < n1; n++ {
		col := buf[(n-n0)*m.K : (n-n0+1)*m.K]
		for b := int64(0); b < qw.blocks; b++ {
			blk := col[b*bs : min(m.K, (b+1)*bs)]
			scale, zp, err := int4Params(blk, r.opts.Symmetric)
			if err != nil {
				return fmt.Errorf("weight %q column %d: %w", qw.name, n, err)
			}
			qw.scales[n*qw.blocks+b] = scale
			if qw.zp4 != nil {
				qw.zp4[n*qw.blocks+b] = byte(zp)
			}
			inv := 1 / scale
			for i := range codes {
				codes[i] = byte(zp)
				if i < len(blk) {
					codes[i] = byte(quant(blk[i], inv, zp, 0, 15))
				}
			}
			dst := blob[b*qw.blobSize : (b+1)*qw.blobSize]
			for i := range dst {
				dst[i] = codes[2*i] | codes[2*i+1]<<4
			}
		}
		if _, err := out.Write(blob); err != nil {
			return err
		}
	}
	return nil
}

// int4Params follows onnxruntime's block quantizer: asymmetric blocks map
// [min(x,0), max(x,0)] onto 0..15; symmetric blocks use zero point 8 and
// the value of largest magnitude maps to -8.
func int4Params(blk []float32, symmetric bool) (scale, zp float32, err error) {
	var lo, hi, amax float32
	for _, v := range blk {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, 0, fmt.Errorf("non-finite value: exclude its node with --exclude-nodes")
		}
		lo, hi = min(lo, v), max(hi, v)
		if abs(v) > abs(amax) {
			amax = v
		}
	}
	if symmetric {
		scale = amax / -8
		if scale == 0 {
			return 1, 8, nil
		}
		return scale, 8, nil
	}
	scale = (hi - lo) / 15
	if scale == 0 {
		return 1, 0, nil
	}
	zp = float32(math.RoundToEven(float64(-lo / scale)))
	return scale, min(max(zp, 0), 15), nil
}

func abs(v float32) float32 { return float32(math.Abs(float64(v))) }

// writeNibbles packs per-block zero points two per byte, per column, as
// MatMulNBits reads them ([N, ceil(blocks/2)]).
func writeNibbles(out io.Writer, zps []byte, n, blocks int64) error {
	per := (blocks + 1) / 2
	b := make([]byte, n*per)
	for c := int64(0); c < n; c++ {
		for k := int64(0); k < blocks; k++ {
			z := zps[c*blocks+k] & 0x0f
			if k%2 == 1 {
				z <<= 4
			}
			b[c*per+k/2] |= z
		}
	}
	_, err := out.Write(b)
	return err
}
