package quantize

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRNE(t *testing.T) {
	for _, x := range []float32{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, 0.49999997, 3.7, -3.7, 254.5} {
		if got, want := rne(x), float32(math.RoundToEven(float64(x))); got != want {
			t.Errorf("rne(%v) = %v, want %v", x, got, want)
		}
	}
}

func TestQuantizeToMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	v := make([]float32, 3*70000)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	for _, n := range []int{1, 3} {
		inv, zp := make([]float32, n), make([]float32, n)
		for j := range inv {
			inv[j], zp[j] = 40+float32(j), float32(j)
		}
		q := make([]byte, len(v))
		quantizeTo(q, v, inv, zp, -127, 127)
		for i, x := range v {
			j := i % n
			want := math.RoundToEven(float64(x*inv[j])) + float64(zp[j])
			want = math.Max(-127, math.Min(127, want))
			if int8(q[i]) != int8(want) {
				t.Fatalf("n=%d v[%d]=%v: got %d, want %v", n, i, x, int8(q[i]), want)
			}
		}
	}
}

// BenchmarkInt8Kernels measures the ranges and quantization of 16 Mi
// float32 weights (64 MiB), the per-element cost of INT8 quantization.
func BenchmarkInt8Kernels(b *testing.B) {
	v := make([]float32, 16<<20)
	for i := range v {
		v[i] = float32(i%1000)/500 - 1
	}
	q := make([]byte, len(v))
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		lo, hi, _, _ := rangeOf(v)
		s, z := scaleZP(lo, hi, false, false)
		quantizeTo(q, v, []float32{1 / s}, []float32{z}, -127, 127)
	}
}

func BenchmarkRangeOf(b *testing.B) {
	v := make([]float32, 16<<20)
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		rangeOf(v)
	}
}

func BenchmarkQuantizeTo(b *testing.B) {
	v := make([]float32, 16<<20)
	q := make([]byte, len(v))
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		quantizeTo(q, v, []float32{100}, []float32{0}, -127, 127)
	}
}
