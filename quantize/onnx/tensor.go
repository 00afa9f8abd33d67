package onnx

import (
	"fmt"
	"math"

	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Data types used by the quantizer (onnx.proto TensorProto.DataType).
const (
	Float   = int32(onnxpb.TensorProto_FLOAT)
	Uint8   = int32(onnxpb.TensorProto_UINT8)
	Int8    = int32(onnxpb.TensorProto_INT8)
	Int32   = int32(onnxpb.TensorProto_INT32)
	Int64   = int32(onnxpb.TensorProto_INT64)
	Float16 = int32(onnxpb.TensorProto_FLOAT16)
)

// ElemSize returns the byte size of one element of a fixed-size ONNX data
// type, or 0 for types without one (STRING, UNDEFINED, unknown values).
func ElemSize(dataType int32) int64 {
	switch onnxpb.TensorProto_DataType(dataType) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		return 4
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_INT8, onnxpb.TensorProto_BOOL:
		return 1
	case onnxpb.TensorProto_UINT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		return 2
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	}
	return 0
}

// maxElems bounds the element count a tensor may declare, so that products
// of dims never overflow int64 when multiplied by an element size.
const maxElems = int64(1) << 56

// NumElements returns the product of dims, refusing negative dims and
// products that would overflow.
func NumElements(dims []int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in %v", d, dims)
		}
		if d != 0 && n > maxElems/d {
			return 0, fmt.Errorf("dimensions %v: element count overflows", dims)
		}
		n *= d
	}
	return n, nil
}

// ByteSize returns the size in bytes of a tensor's raw data as its data
// type and dims declare it.
func ByteSize(t *onnxpb.TensorProto) (int64, error) {
	es := ElemSize(t.GetDataType())
	if es == 0 {
		return 0, fmt.Errorf("tensor %q: data type %s has no fixed element size", t.GetName(), onnxpb.TensorProto_DataType(t.GetDataType()))
	}
	n, err := NumElements(t.GetDims())
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	return n * es, nil
}

// Float32ToFloat16 converts with round-to-nearest-even, as numpy does.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp > 142: // overflow: |f| >= 65520 rounds to Inf
		return sign | 0x7c00
	case exp >= 113: // normal half
		h := uint32(exp-112)<<10 | mant>>13
		rest := mant & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++ // may carry into the exponent, which is still correct
		}
		return sign | uint16(h)
	case exp >= 102: // subnormal half
		m := mant | 0x800000
		shift := uint32(126 - exp)
		h := m >> shift
		rest := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	return sign
}
