package bench

import (
	"fmt"
	"math"
)

// Element types of Tensor.DType, spelled as ONNX spells them in lower case.
const (
	Float32  = "float32"
	Float16  = "float16"
	BFloat16 = "bfloat16"
	Float64  = "float64"
	Int8     = "int8"
	Uint8    = "uint8"
	Int16    = "int16"
	Uint16   = "uint16"
	Int32    = "int32"
	Uint32   = "uint32"
	Int64    = "int64"
	Uint64   = "uint64"
	Bool     = "bool"
	String   = "string"
)

// Tensor is a named, typed, dense tensor held in Go memory. Data is a slice
// whose element type matches DType: []float32, []float64, []int8, []uint8,
// []int16, []uint16, []int32, []uint32, []int64, []uint64, []bool; float16 and
// bfloat16 are []uint16 holding the raw bits.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  any
}

// onnxTypes maps ONNX TensorProto.DataType numbers to DType names; types the
// package cannot feed or compare (complex, string, float8) are absent.
var onnxTypes = map[int64]string{
	1: Float32, 2: Uint8, 3: Int8, 4: Uint16, 5: Int16, 6: Int32, 7: Int64,
	8: String, 9: Bool, 10: Float16, 11: Float64, 12: Uint32, 13: Uint64, 16: BFloat16,
}

// dtypeSize is the size in bytes of one element of each numeric DType.
var dtypeSize = map[string]int{
	Float32: 4, Float16: 2, BFloat16: 2, Float64: 8, Int8: 1, Uint8: 1, Int16: 2,
	Uint16: 2, Int32: 4, Uint32: 4, Int64: 8, Uint64: 8, Bool: 1,
}

// NumElements is the product of the dimensions; an error for a negative
// dimension or a product that overflows.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is %d: shape %v is not concrete", i, d, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v: element count overflows", shape)
		}
		n *= d
	}
	return n, nil
}

// Len is the number of elements in Data, or -1 for an unsupported Data type.
func (t Tensor) Len() int {
	switch d := t.Data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int8:
		return len(d)
	case []uint8:
		return len(d)
	case []int16:
		return len(d)
	case []uint16:
		return len(d)
	case []int32:
		return len(d)
	case []uint32:
		return len(d)
	case []int64:
		return len(d)
	case []uint64:
		return len(d)
	case []bool:
		return len(d)
	}
	return -1
}

// Validate checks that Data's Go type matches DType and that its length is the
// product of Shape.
func (t Tensor) Validate() error {
	want := map[string]string{
		Float32: "[]float32", Float64: "[]float64", Float16: "[]uint16", BFloat16: "[]uint16",
		Int8: "[]int8", Uint8: "[]uint8", Int16: "[]int16", Uint16: "[]uint16", Int32: "[]int32",
		Uint32: "[]uint32", Int64: "[]int64", Uint64: "[]uint64", Bool: "[]bool",
	}[t.DType]
	if want == "" {
		return fmt.Errorf("tensor %q: unsupported dtype %q", t.Name, t.DType)
	}
	if got := fmt.Sprintf("%T", t.Data); got != want {
		return fmt.Errorf("tensor %q: dtype %s needs %s data, got %s", t.Name, t.DType, want, got)
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if int64(t.Len()) != n {
		return fmt.Errorf("tensor %q: shape %v needs %d elements, data has %d", t.Name, t.Shape, n, t.Len())
	}
	return nil
}

// IsFloat reports whether the tensor holds floating-point values, the ones
// Similarity compares.
func (t Tensor) IsFloat() bool {
	switch t.DType {
	case Float32, Float16, BFloat16, Float64:
		return true
	}
	return false
}

// Float64s returns the values converted to float64 (fp16 and bf16 decoded,
// integers and booleans widened), for comparison.
func (t Tensor) Float64s() ([]float64, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	out := make([]float64, t.Len())
	switch d := t.Data.(type) {
	case []float32:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []float64:
		copy(out, d)
	case []uint16:
		switch t.DType {
		case Float16:
			for i, v := range d {
				out[i] = float64(HalfToFloat32(v))
			}
		case BFloat16:
			for i, v := range d {
				out[i] = float64(math.Float32frombits(uint32(v) << 16))
			}
		default:
			for i, v := range d {
				out[i] = float64(v)
			}
		}
	case []int8:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []uint8:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []int16:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []int32:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []uint32:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []int64:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []uint64:
		for i, v := range d {
			out[i] = float64(v)
		}
	case []bool:
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
	}
	return out, nil
}

// HalfToFloat32 decodes IEEE 754 binary16 bits.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise into a float32 exponent
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToHalf encodes a float32 as IEEE 754 binary16, rounding to nearest
// even and saturating to infinity.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case b>>23&0xff == 0xff: // inf or nan
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the right rounding
	}
	return sign | uint16(half)
}
