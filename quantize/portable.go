package quantize

import (
	"context"
	"fmt"
	"sync"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Why int8 weights can be wrong on some CPUs, and what the default does.
//
// onnxruntime multiplies u8 activations by s8 weights. With VNNI
// (vpdpbusd) or on ARM the products are summed in 32 bits and nothing can
// overflow. On x86 CPUs without VNNI, MLAS's AVX2 and AVX-512 kernels use
// vpmaddubsw: the products of two neighbouring K elements (rows 2i and
// 2i+1 of B, the same column) are added in a saturating int16 before they
// reach the 32-bit accumulator. Activations are anything in 0..255, so a
// pair of weights (w0, w1) is exact on every input only if
//
//	255·(max(w0,0)+max(w1,0)) ≤ 32767  and  255·(min(w0,0)+min(w1,0)) ≥ −32768,
//
// that is, the positive parts and the negative parts of the pair each sum
// to at most PairLimit in magnitude. Full-range weights (±127) break it as
// soon as two neighbours of the same sign are large; 7-bit weights
// (--reduce-range) never do, at the price of one bit on every tensor.
//
// The portable default keeps full range wherever the bound holds and, for
// a weight (or, per channel, a column) where it would not, widens the
// scale just enough that it does: s = max(|w|max, P, N)/127, where P and N
// are the largest positive and negative pair sums of the float weights.
// Rounding adds at most ½ to each element, so a quantized pair sums to at
// most 127+1 = PairLimit. The scale is never wider than reduce-range's.
// uint8 weights go through MLAS's u8×u8 kernels, which widen to 16 bits
// before multiplying and cannot saturate: they need nothing.

// PairLimit is the largest magnitude the positive or the negative parts of
// two neighbouring int8 weights may sum to for vpmaddubsw to be exact.
const PairLimit = 128

// pairPeaks folds the largest positive and negative pair sums of the rows
// of v (rows of n floats, row pairs (0,1), (2,3), ... ; an odd last row
// pairs with zero) into pos and neg: per column when len(pos) == n, over
// the whole chunk when len(pos) == 1. Values are magnitudes (neg ≥ 0).
func pairPeaks(v []float32, n int, pos, neg []float32) error {
	var mu sync.Mutex
	return parallel(len(v), 2*n, func(a, b int) {
		p, q := make([]float32, len(pos)), make([]float32, len(pos))
		for r := a; r < b; r += 2 * n {
			row0 := v[r : r+n]
			var row1 []float32
			if r+2*n <= b {
				row1 = v[r+n : r+2*n]
			}
			for j, x := range row0 {
				var y float32
				if row1 != nil {
					y = row1[j]
				}
				sp, sn := pairParts(x, y)
				k := 0
				if len(p) > 1 {
					k = j
				}
				if sp > p[k] {
					p[k] = sp
				}
				if sn > q[k] {
					q[k] = sn
				}
			}
		}
		mu.Lock()
		for k := range p {
			pos[k], neg[k] = max(pos[k], p[k]), max(neg[k], q[k])
		}
		mu.Unlock()
	})
}

// pairParts returns the sum of the positive parts and the magnitude of the
// sum of the negative parts of a pair.
func pairParts[T int | float32](x, y T) (p, n T) {
	if x > 0 {
		p += x
	} else {
		n -= x
	}
	if y > 0 {
		p += y
	} else {
		n -= y
	}
	return p, n
}

// PairOverflows counts the pairs of quantized int8 weights in q (rows of n
// bytes, K-major as MatMulInteger stores B; an odd last row pairs with
// zero) whose positive or negative parts exceed PairLimit: the pairs a
// CPU without VNNI computes wrong for some inputs.
func PairOverflows(q []byte, n int) int64 {
	var total int64
	for r := 0; r < len(q); r += 2 * n {
		row0 := q[r : r+n]
		var row1 []byte
		if r+2*n <= len(q) {
			row1 = q[r+n : r+2*n]
		}
		for j := range row0 {
			x := int(int8(row0[j]))
			y := 0
			if row1 != nil {
				y = int(int8(row1[j]))
			}
			if p, m := pairParts(x, y); p > PairLimit || m > PairLimit {
				total++
			}
		}
	}
	return total
}

// pairSpan is how far, in steps of the scale, a pair's float sum may
// reach: rne(a)+rne(b) ≤ a+b+1, so a sum up to 127.99 rounds to at most
// 128 = PairLimit, with room for float32 error in x·(1/s).
const pairSpan = 127.99

// portableScale is the symmetric int8 scale for a weight (or column) with
// largest magnitude amax and largest pair sums pos and neg: full range
// (amax/127) where that keeps every pair within PairLimit, else just wide
// enough. narrowed reports the second case.
func portableScale(amax, pos, neg float32) (scale float32, narrowed bool) {
	full := amax / 127
	peak := max(pos, neg)
	if full == 0 || peak <= full*pairSpan {
		return full, false
	}
	return peak / pairSpan, true
}

// fixPairs brings every pair of int8 weights in q (rows of n bytes) back
// within PairLimit by moving the larger of the two towards zero, and says
// how many it changed. The portable scale makes this unreachable; it is the
// guarantee that a portable model never needs VNNI, whatever float
// rounding did.
func fixPairs(q []byte, n int) int64 {
	var fixed int64
	for r := 0; r+2*n <= len(q); r += 2 * n {
		row0, row1 := q[r:r+n], q[r+n:r+2*n]
		for j := range row0 {
			x, y := int(int8(row0[j])), int(int8(row1[j]))
			if (x > 0) == (y > 0) && abs8(x)+abs8(y) > PairLimit {
				over := abs8(x) + abs8(y) - PairLimit
				if abs8(x) >= abs8(y) {
					x -= sign(x) * over
				} else {
					y -= sign(y) * over
				}
				row0[j], row1[j] = byte(int8(x)), byte(int8(y))
				fixed++
			}
		}
	}
	return fixed
}

func abs8(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	if x < 0 {
		return -1
	}
	return 1
}

// VNNIWeights lists the int8 weights of a quantized model (B of
// MatMulInteger and com.microsoft.DynamicQuantizeMatMul in the main
// graph, whoever quantized it) that have pairs past PairLimit: the weights
// a CPU without VNNI computes wrong. It reads the weights in bounded chunks
// and runs nothing.
func VNNIWeights(ctx context.Context, path string) ([]string, error) {
	m, err := onnx.Open(path)
	if err != nil {
		return nil, err
	}
	return ModelVNNIWeights(ctx, m)
}

// ModelVNNIWeights is VNNIWeights of a model already open.
func ModelVNNIWeights(ctx context.Context, m *onnx.Model) ([]string, error) {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range m.Graph().GetInitializer() {
		inits[t.GetName()] = t
	}
	var out []string
	seen := map[string]bool{}
	buf := make([]byte, 0, 4<<20)
	for _, n := range m.Graph().GetNode() {
		op := n.GetOpType()
		if (op != "MatMulInteger" && op != "DynamicQuantizeMatMul") || len(n.GetInput()) < 2 {
			continue
		}
		t := inits[n.GetInput()[1]]
		if t == nil || seen[t.GetName()] || t.GetDataType() != onnx.Int8 || len(t.GetDims()) != 2 || t.GetDims()[1] <= 0 {
			continue
		}
		seen[t.GetName()] = true
		cols := t.GetDims()[1]
		d, err := m.TensorData(t)
		if err != nil {
			return nil, fmt.Errorf("weight %q: %w", t.GetName(), err)
		}
		// Whole row pairs per read.
		step := max(2*cols, (int64(cap(buf))/(2*cols))*2*cols)
		bad := false
		for off := int64(0); off < d.Size && !bad; off += step {
			if err := ctx.Err(); err != nil {
				d.Close()
				return nil, err
			}
			b := growBytes(buf, min(step, d.Size-off))
			if _, err := d.ReadAt(b, off); err != nil {
				d.Close()
				return nil, fmt.Errorf("weight %q: %w", t.GetName(), err)
			}
			bad = PairOverflows(b, int(cols)) > 0
		}
		d.Close()
		if bad {
			out = append(out, t.GetName())
		}
	}
	return out, nil
}
