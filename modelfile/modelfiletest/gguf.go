// Package modelfiletest writes valid model files for tests: GGUF files,
// safetensors files and sharded sets with their index, and Hugging
// Face-style model directories. Everything is deterministic (same spec, same
// bytes) and streamed, so a test can write a multi-GiB file in bounded
// memory. The Want* values state what modelfile must read back from the
// default files.
package modelfiletest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/modelfile/gguf"
)

// GGUFKV is one metadata key/value. Value is a Go value of the type's kind:
// uint8/int8/.../uint64/int64, float32/float64, bool, string; an array is a
// slice of those ([]string, []int32, []float32, ...), with Type TypeArray.
type GGUFKV struct {
	Key   string
	Type  gguf.ValueType
	Value any
}

// GGUFTensor is one tensor. Data nil means a deterministic fill of the
// size Dims and Type need.
type GGUFTensor struct {
	Name string
	Dims []uint64
	Type gguf.TensorType
	Data []byte
}

// GGUFSpec describes a GGUF file.
type GGUFSpec struct {
	Version   uint32 // 0 means 3
	Alignment uint32 // 0 means 32; another value is written as general.alignment
	KVs       []GGUFKV
	Tensors   []GGUFTensor
}

// TensorBytes is the data size of a tensor of this type and shape.
func TensorBytes(typ gguf.TensorType, dims []uint64) (int64, error) {
	block, bytes, ok := typ.BlockSize()
	if !ok {
		return 0, fmt.Errorf("unknown tensor type %d", typ)
	}
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	if n%uint64(block) != 0 {
		return 0, fmt.Errorf("%d elements are not whole %s blocks", n, typ)
	}
	return int64(n/uint64(block)) * bytes, nil
}

// EncodeGGUF writes the GGUF file spec describes to w.
func EncodeGGUF(w io.Writer, spec GGUFSpec) error {
	_, err := encodeGGUF(w, spec, true)
	return err
}

// WriteSparseGGUF writes spec's header to path and extends the file to its
// full size without writing the tensor data, which reads as zeros: a valid
// file of any size in no time, for tests that must not depend on it.
func WriteSparseGGUF(path string, spec GGUFSpec) error {
	return writeSparse(path, func(w io.Writer) (int64, error) { return encodeGGUF(w, spec, false) })
}

func writeSparse(path string, encode func(io.Writer) (int64, error)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	size, err := encode(f)
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// encodeGGUF writes the file (or only its header) and returns the size of
// the whole file.
func encodeGGUF(w io.Writer, spec GGUFSpec, withData bool) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{w: bw}
	version := spec.Version
	if version == 0 {
		version = 3
	}
	align := int64(spec.Alignment)
	kvs := spec.KVs
	if align == 0 {
		align = gguf.DefaultAlignment
	} else {
		kvs = append([]GGUFKV{{"general.alignment", gguf.TypeUint32, spec.Alignment}}, kvs...)
	}
	e.raw([]byte(gguf.Magic))
	e.u32(version)
	e.u64(uint64(len(spec.Tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Type))
		if kv.Type == gguf.TypeArray {
			e.array(kv.Value)
		} else {
			e.value(kv.Type, kv.Value)
		}
	}
	sizes := make([]int64, len(spec.Tensors))
	var off int64
	for i, t := range spec.Tensors {
		n, err := TensorBytes(t.Type, t.Dims)
		if err != nil {
			return 0, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		if t.Data != nil && int64(len(t.Data)) != n {
			return 0, fmt.Errorf("tensor %s: %d bytes of data, want %d", t.Name, len(t.Data), n)
		}
		sizes[i] = n
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(off))
		off += (n + align - 1) / align * align
	}
	e.pad(align)
	total := e.n + off
	for i, t := range spec.Tensors {
		if !withData {
			break
		}
		if t.Data != nil {
			e.raw(t.Data)
		} else {
			e.fill(sizes[i], uint64(i))
		}
		e.pad(align)
	}
	if e.err != nil {
		return 0, e.err
	}
	return total, bw.Flush()
}

// WriteGGUF writes spec to path.
func WriteGGUF(path string, spec GGUFSpec) error {
	return writeFile(path, func(w io.Writer) error { return EncodeGGUF(w, spec) })
}

func writeFile(path string, encode func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := encode(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u32(v uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *encoder) pad(align int64) {
	if r := e.n % align; r != 0 {
		e.raw(make([]byte, align-r))
	}
}

// fill writes n deterministic bytes that differ per seed.
func (e *encoder) fill(n int64, seed uint64) {
	buf := make([]byte, 64<<10)
	x := seed*0x9E3779B97F4A7C15 + 1
	for n > 0 && e.err == nil {
		k := min(n, int64(len(buf)))
		for i := int64(0); i < k; i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], x)
			copy(buf[i:k], b[:])
		}
		e.raw(buf[:k])
		n -= k
	}
}

func (e *encoder) value(t gguf.ValueType, v any) {
	switch t {
	case gguf.TypeString:
		e.str(v.(string))
	case gguf.TypeBool:
		if v.(bool) {
			e.raw([]byte{1})
		} else {
			e.raw([]byte{0})
		}
	case gguf.TypeFloat32, gguf.TypeFloat64:
		f, ok := v.(float64)
		if f32, is32 := v.(float32); is32 {
			f, ok = float64(f32), true
		}
		if !ok {
			e.fail(t, v)
		} else if t == gguf.TypeFloat32 {
			e.u32(math.Float32bits(float32(f)))
		} else {
			e.u64(math.Float64bits(f))
		}
	case gguf.TypeUint8, gguf.TypeInt8, gguf.TypeUint16, gguf.TypeInt16, gguf.TypeUint32, gguf.TypeInt32, gguf.TypeUint64, gguf.TypeInt64:
		n, ok := toUint64(v)
		switch {
		case !ok:
			e.fail(t, v)
		case t == gguf.TypeUint8 || t == gguf.TypeInt8:
			e.raw([]byte{byte(n)})
		case t == gguf.TypeUint16 || t == gguf.TypeInt16:
			e.raw(binary.LittleEndian.AppendUint16(nil, uint16(n)))
		case t == gguf.TypeUint32 || t == gguf.TypeInt32:
			e.u32(uint32(n))
		default:
			e.u64(n)
		}
	default:
		e.fail(t, v)
	}
}

func (e *encoder) fail(t gguf.ValueType, v any) {
	if e.err == nil {
		e.err = fmt.Errorf("cannot encode %T as a GGUF %s value", v, t)
	}
}

func (e *encoder) array(v any) {
	switch a := v.(type) {
	case []string:
		e.u32(uint32(gguf.TypeString))
		e.u64(uint64(len(a)))
		for _, s := range a {
			e.str(s)
		}
	case []int32:
		e.u32(uint32(gguf.TypeInt32))
		e.u64(uint64(len(a)))
		for _, x := range a {
			e.u32(uint32(x))
		}
	case []float32:
		e.u32(uint32(gguf.TypeFloat32))
		e.u64(uint64(len(a)))
		for _, x := range a {
			e.u32(math.Float32bits(x))
		}
	case []uint8:
		e.u32(uint32(gguf.TypeUint8))
		e.u64(uint64(len(a)))
		e.raw(a)
	default:
		if e.err == nil {
			e.err = fmt.Errorf("cannot encode an array of %T", v)
		}
	}
}

func toUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case int8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case int16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case int32:
		return uint64(x), true
	case uint64:
		return x, true
	case int64:
		return uint64(x), true
	case int:
		return uint64(x), true
	}
	return 0, false
}

// Facts of the file LlamaGGUF describes, as modelfile must read them.
const (
	WantGGUFArchitecture  = "llama"
	WantGGUFName          = "tiny-llama-test"
	WantGGUFContextLength = 4096
	WantGGUFFileType      = "Q4_K_M"
	// 256*64 + 256 + 2*(256*256) + 256*512 + 512*256
	WantGGUFParameters = 16384 + 256 + 2*65536 + 2*131072
	WantGGUFTensors    = 6
	WantGGUFTensorType = "Q4_K=3,F32=1,Q8_0=1,Q6_K=1"
)

// LlamaGGUF describes a small but complete llama-style GGUF v3: general.*
// and llama.* metadata (file_type 15, Q4_K_M), a tokenizer vocabulary
// array, and quantized and F32 tensors with aligned data.
func LlamaGGUF() GGUFSpec {
	tokens := make([]string, 64)
	scores := make([]float32, 64)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok%d", i)
		scores[i] = -float32(i)
	}
	return GGUFSpec{
		KVs: []GGUFKV{
			{"general.architecture", gguf.TypeString, WantGGUFArchitecture},
			{"general.name", gguf.TypeString, WantGGUFName},
			{"general.file_type", gguf.TypeUint32, uint32(15)},
			{"general.quantization_version", gguf.TypeUint32, uint32(2)},
			{"llama.context_length", gguf.TypeUint32, uint32(WantGGUFContextLength)},
			{"llama.embedding_length", gguf.TypeUint32, uint32(256)},
			{"llama.block_count", gguf.TypeUint32, uint32(1)},
			{"llama.attention.head_count", gguf.TypeUint32, uint32(4)},
			{"llama.rope.freq_base", gguf.TypeFloat32, float32(10000)},
			{"llama.attention.layer_norm_rms_epsilon", gguf.TypeFloat32, float32(1e-5)},
			{"tokenizer.ggml.model", gguf.TypeString, "llama"},
			{"tokenizer.ggml.tokens", gguf.TypeArray, tokens},
			{"tokenizer.ggml.scores", gguf.TypeArray, scores},
			{"tokenizer.ggml.bos_token_id", gguf.TypeUint32, uint32(1)},
			{"tokenizer.ggml.add_bos_token", gguf.TypeBool, true},
		},
		Tensors: []GGUFTensor{
			{Name: "token_embd.weight", Dims: []uint64{256, 64}, Type: gguf.TensorQ4_K},
			{Name: "output_norm.weight", Dims: []uint64{256}, Type: gguf.TensorF32},
			{Name: "blk.0.attn_q.weight", Dims: []uint64{256, 256}, Type: gguf.TensorQ4_K},
			{Name: "blk.0.attn_k.weight", Dims: []uint64{256, 256}, Type: gguf.TensorQ8_0},
			{Name: "blk.0.ffn_up.weight", Dims: []uint64{256, 512}, Type: gguf.TensorQ4_K},
			{Name: "blk.0.ffn_down.weight", Dims: []uint64{512, 256}, Type: gguf.TensorQ6_K},
		},
	}
}

// GGUF writes LlamaGGUF to dir/name and returns its path.
func GGUF(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := WriteGGUF(p, LlamaGGUF()); err != nil {
		t.Fatal(err)
	}
	return p
}

// LargeGGUF describes a GGUF of about size bytes: LlamaGGUF's metadata and
// one F32 tensor filling the rest (for transfer benchmarks).
func LargeGGUF(size int64) GGUFSpec {
	spec := LlamaGGUF()
	rows := uint64(max(size/(4*1024), 1))
	spec.Tensors = []GGUFTensor{{Name: "blob.weight", Dims: []uint64{1024, rows}, Type: gguf.TensorF32}}
	return spec
}
