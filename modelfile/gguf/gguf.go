// Package gguf reads and checks the header of a GGUF file (llama.cpp's model
// format, versions 2 and 3): the metadata key/values, the tensor table, and
// that every tensor's data lies aligned inside the file without overlapping
// another. Tensor data is never read.
//
// The header is untrusted input. Every length and count is checked against
// the bytes left in the file before anything is read or allocated from it,
// and what the parser keeps (keys, short strings, tensor names and shapes)
// is bounded by MaxRetained, so a hostile header costs bounded memory and
// time whatever it declares. Arrays (a tokenizer's vocabulary) are walked
// and checked but only their element type and length are kept.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strings"
	"unicode/utf8"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Limits of the parser. MaxTensorName and MaxDims are llama.cpp's own
// (GGML_MAX_NAME, GGML_MAX_DIMS); the others bound memory, far above any
// real model (the largest have a few thousand tensors and ~50 keys).
const (
	MaxTensors       = 1 << 20
	MaxKVs           = 1 << 20
	MaxKeyLen        = 1<<16 - 1
	MaxTensorName    = 63
	MaxDims          = 4
	MaxRetained      = 32 << 20 // bytes of keys, kept strings, names and shapes
	KeptString       = 1024     // string values longer than this keep a prefix only
	DefaultAlignment = 32
)

// FormatError is a malformed or unsupported GGUF header.
type FormatError struct {
	Offset int64 // byte offset in the file where the problem is
	Msg    string
}

func (e *FormatError) Error() string { return fmt.Sprintf("gguf: at byte %d: %s", e.Offset, e.Msg) }

// KV is one metadata key/value. Value is uint64 for the unsigned types,
// int64 for the signed ones, float64, bool, or string; nil for an array.
type KV struct {
	Key  string
	Type ValueType
	// Value holds a scalar; for a string longer than KeptString its
	// first KeptString bytes (Truncated is then true).
	Value     any
	Truncated bool
	// Len is the length of a string (bytes) or an array (elements).
	Len uint64
	// ElemType is an array's element type.
	ElemType ValueType
}

// Tensor is one entry of the tensor table.
type Tensor struct {
	Name     string
	Dims     []int64
	Type     TensorType
	Offset   int64 // from File.DataOffset
	Size     int64 // bytes of data
	Elements int64
}

// File is a parsed GGUF header.
type File struct {
	Version    uint32
	Alignment  int64
	DataOffset int64 // where tensor data starts (aligned end of the header)
	Size       int64 // file size
	KVs        []KV
	Tensors    []Tensor
	keys       map[string]int
}

// Parse reads and checks the GGUF header in r (size bytes). It returns a
// *FormatError for a malformed file, or the read error of r.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	p := &parser{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size}
	f, err := p.parse()
	if err != nil {
		return nil, err
	}
	return f, nil
}

type parser struct {
	br       *bufio.Reader
	pos      int64
	size     int64
	retained int64
}

func (p *parser) errf(at int64, format string, args ...any) error {
	return &FormatError{Offset: at, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) left() uint64 { return uint64(p.size - p.pos) }

// need fails unless n more bytes are in the file.
func (p *parser) need(n uint64, what string) error {
	if n > p.left() {
		return p.errf(p.pos, "%s: %d bytes past the end of the file (%d bytes left)", what, n, p.left())
	}
	return nil
}

func (p *parser) retain(n int64, what string) error {
	p.retained += n
	if p.retained > MaxRetained {
		return p.errf(p.pos, "%s: header holds more than %d MiB of keys, strings and tensor names", what, MaxRetained>>20)
	}
	return nil
}

func (p *parser) read(b []byte, what string) error {
	if err := p.need(uint64(len(b)), what); err != nil {
		return err
	}
	n, err := io.ReadFull(p.br, b)
	p.pos += int64(n)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return p.errf(p.pos, "%s: file ends early", what)
		}
		return fmt.Errorf("gguf: read %s at byte %d: %w", what, p.pos, err)
	}
	return nil
}

func (p *parser) skip(n uint64, what string) error {
	if err := p.need(n, what); err != nil {
		return err
	}
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := p.br.Discard(step)
		p.pos += int64(d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return p.errf(p.pos, "%s: file ends early", what)
			}
			return fmt.Errorf("gguf: read %s at byte %d: %w", what, p.pos, err)
		}
		n -= uint64(d)
	}
	return nil
}

func (p *parser) u32(what string) (uint32, error) {
	var b [4]byte
	if err := p.read(b[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

func (p *parser) u64(what string) (uint64, error) {
	var b [8]byte
	if err := p.read(b[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// str reads a string of at most limit bytes, keeping its first keep bytes.
func (p *parser) str(what string, limit uint64, keep int) (s string, n uint64, err error) {
	at := p.pos
	n, err = p.u64(what + " length")
	if err != nil {
		return "", 0, err
	}
	if n > limit {
		return "", 0, p.errf(at, "%s is %d bytes, over the %d-byte limit", what, n, limit)
	}
	if err := p.need(n, what); err != nil {
		return "", 0, err
	}
	k := min(n, uint64(keep))
	b := make([]byte, k)
	if err := p.read(b, what); err != nil {
		return "", 0, err
	}
	if err := p.skip(n-k, what); err != nil {
		return "", 0, err
	}
	return string(b), n, nil
}

// skipStrings walks an array of n strings without keeping them. It is the
// one loop whose count a file sets (a vocabulary has ~10^5 strings, a
// hostile file 10^8 empty ones), so it allocates nothing per element.
func (p *parser) skipStrings(key string, n uint64) error {
	for j := uint64(0); j < n; {
		if p.br.Buffered() < 8 {
			if b, err := p.br.Peek(8); len(b) < 8 {
				if err == nil || errors.Is(err, io.EOF) {
					return p.errf(p.pos, "%q element %d length: file ends early", key, j)
				}
				return fmt.Errorf("gguf: read %q element %d at byte %d: %w", key, j, p.pos, err)
			}
		}
		buf, _ := p.br.Peek(p.br.Buffered())
		// Consume the lengths in the buffer up to the first non-empty string.
		k, l := 0, uint64(0)
		for k+8 <= len(buf) && j < n {
			l = binary.LittleEndian.Uint64(buf[k:])
			k += 8
			j++
			if l != 0 {
				break
			}
		}
		p.br.Discard(k)
		p.pos += int64(k)
		if l > p.left() {
			return p.errf(p.pos-8, "%q element %d: %d bytes past the end of the file (%d bytes left)", key, j-1, l, p.left())
		}
		if l > 0 {
			if err := p.skip(l, "string array element"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *parser) parse() (*File, error) {
	var magic [4]byte
	if err := p.read(magic[:], "magic"); err != nil {
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, p.errf(0, "not a GGUF file (magic %q, want %q)", magic[:], Magic)
	}
	version, err := p.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return nil, p.errf(4, "GGUF version 1 is not supported (its counts are 32-bit); convert the file with a current llama.cpp")
	case version&0xffff == 0 && bits.ReverseBytes32(version) <= 3:
		return nil, p.errf(4, "big-endian GGUF (version %d byte-swapped) is not supported", bits.ReverseBytes32(version))
	default:
		return nil, p.errf(4, "GGUF version %d is not supported (2 and 3 are)", version)
	}
	f := &File{Version: version, Alignment: DefaultAlignment, Size: p.size, keys: map[string]int{}}

	at := p.pos
	nTensors, err := p.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := p.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// The smallest key/value takes 13 bytes (length, empty key, type, one
	// byte), the smallest tensor entry 24: a count the file cannot hold is
	// refused before anything is sized by it.
	if nKV > MaxKVs || nKV > p.left()/13 {
		return nil, p.errf(at+8, "metadata count %d cannot fit in a %d-byte file (limit %d)", nKV, p.size, MaxKVs)
	}
	if nTensors > MaxTensors || nTensors > p.left()/24 {
		return nil, p.errf(at, "tensor count %d cannot fit in a %d-byte file (limit %d)", nTensors, p.size, MaxTensors)
	}

	for i := uint64(0); i < nKV; i++ {
		kv, err := p.kv(i)
		if err != nil {
			return nil, err
		}
		if _, dup := f.keys[kv.Key]; dup {
			return nil, p.errf(p.pos, "metadata key %q appears twice", kv.Key)
		}
		f.keys[kv.Key] = len(f.KVs)
		f.KVs = append(f.KVs, kv)
	}
	if i, ok := f.keys["general.alignment"]; ok {
		kv := f.KVs[i]
		a, _ := kv.Value.(uint64)
		if kv.Type != TypeUint32 || a == 0 || a&(a-1) != 0 {
			return nil, p.errf(0, "general.alignment must be a power of two uint32, got %v (%s)", kv.Value, kv.Type)
		}
		f.Alignment = int64(a)
	}

	names := make(map[string]struct{}, min(nTensors, 4096))
	for i := uint64(0); i < nTensors; i++ {
		t, err := p.tensor(i)
		if err != nil {
			return nil, err
		}
		if _, dup := names[t.Name]; dup {
			return nil, p.errf(p.pos, "tensor %q appears twice", t.Name)
		}
		names[t.Name] = struct{}{}
		f.Tensors = append(f.Tensors, t)
	}

	f.DataOffset = (p.pos + f.Alignment - 1) / f.Alignment * f.Alignment
	if err := f.checkData(); err != nil {
		return nil, err
	}
	return f, nil
}

func (p *parser) kv(i uint64) (KV, error) {
	at := p.pos
	key, _, err := p.str(fmt.Sprintf("metadata key %d", i), MaxKeyLen, MaxKeyLen)
	if err != nil {
		return KV{}, err
	}
	if key == "" || !utf8.ValidString(key) {
		return KV{}, p.errf(at, "metadata key %d is empty or not UTF-8", i)
	}
	if err := p.retain(int64(len(key))+64, "metadata"); err != nil {
		return KV{}, err
	}
	tat := p.pos
	typ, err := p.u32(fmt.Sprintf("type of %q", key))
	if err != nil {
		return KV{}, err
	}
	kv := KV{Key: key, Type: ValueType(typ)}
	switch ValueType(typ) {
	case TypeArray:
		et, err := p.u32(fmt.Sprintf("element type of %q", key))
		if err != nil {
			return KV{}, err
		}
		kv.ElemType = ValueType(et)
		cat := p.pos
		n, err := p.u64(fmt.Sprintf("length of %q", key))
		if err != nil {
			return KV{}, err
		}
		kv.Len = n
		switch sz := kv.ElemType.scalarSize(); {
		case kv.ElemType == TypeArray:
			return KV{}, p.errf(tat+4, "%q is an array of arrays, which GGUF readers do not support", key)
		case sz < 0:
			return KV{}, p.errf(tat+4, "%q: unknown array element type %d", key, et)
		case kv.ElemType == TypeString:
			if n > p.left()/8 {
				return KV{}, p.errf(cat, "%q: %d strings cannot fit in the %d bytes left", key, n, p.left())
			}
			if err := p.skipStrings(key, n); err != nil {
				return KV{}, err
			}
		default:
			hi, lo := bits.Mul64(n, uint64(sz))
			if hi != 0 || lo > p.left() {
				return KV{}, p.errf(cat, "%q: %d %s elements run past the end of the file (%d bytes left)", key, n, kv.ElemType, p.left())
			}
			if err := p.skip(lo, fmt.Sprintf("%q elements", key)); err != nil {
				return KV{}, err
			}
		}
		return kv, nil
	case TypeString:
		s, n, err := p.str(fmt.Sprintf("value of %q", key), math.MaxUint64, KeptString)
		if err != nil {
			return KV{}, err
		}
		if err := p.retain(int64(len(s)), "metadata"); err != nil {
			return KV{}, err
		}
		kv.Value, kv.Len, kv.Truncated = s, n, n > uint64(len(s))
		return kv, nil
	}
	sz := kv.Type.scalarSize()
	if sz <= 0 {
		return KV{}, p.errf(tat, "%q: unknown value type %d", key, typ)
	}
	var b [8]byte
	if err := p.read(b[:sz], fmt.Sprintf("value of %q", key)); err != nil {
		return KV{}, err
	}
	switch kv.Type {
	case TypeUint8:
		kv.Value = uint64(b[0])
	case TypeInt8:
		kv.Value = int64(int8(b[0]))
	case TypeBool:
		if b[0] > 1 {
			return KV{}, p.errf(p.pos-1, "%q: bool value %d is neither 0 nor 1", key, b[0])
		}
		kv.Value = b[0] == 1
	case TypeUint16:
		kv.Value = uint64(binary.LittleEndian.Uint16(b[:]))
	case TypeInt16:
		kv.Value = int64(int16(binary.LittleEndian.Uint16(b[:])))
	case TypeUint32:
		kv.Value = uint64(binary.LittleEndian.Uint32(b[:]))
	case TypeInt32:
		kv.Value = int64(int32(binary.LittleEndian.Uint32(b[:])))
	case TypeFloat32:
		kv.Value = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[:])))
	case TypeUint64:
		kv.Value = binary.LittleEndian.Uint64(b[:])
	case TypeInt64:
		kv.Value = int64(binary.LittleEndian.Uint64(b[:]))
	case TypeFloat64:
		kv.Value = math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
	}
	return kv, nil
}

func (p *parser) tensor(i uint64) (Tensor, error) {
	at := p.pos
	name, _, err := p.str(fmt.Sprintf("tensor %d name", i), MaxTensorName, MaxTensorName)
	if err != nil {
		return Tensor{}, err
	}
	if !utf8.ValidString(name) {
		return Tensor{}, p.errf(at, "tensor %d name is not UTF-8", i)
	}
	nd, err := p.u32(fmt.Sprintf("tensor %q dimension count", name))
	if err != nil {
		return Tensor{}, err
	}
	if nd > MaxDims {
		return Tensor{}, p.errf(p.pos-4, "tensor %q has %d dimensions (at most %d)", name, nd, MaxDims)
	}
	if err := p.retain(int64(len(name))+96+8*int64(nd), "tensor table"); err != nil {
		return Tensor{}, err
	}
	t := Tensor{Name: name, Dims: make([]int64, nd), Elements: 1}
	for d := range t.Dims {
		v, err := p.u64(fmt.Sprintf("tensor %q dimension %d", name, d))
		if err != nil {
			return Tensor{}, err
		}
		if v > math.MaxInt64 {
			return Tensor{}, p.errf(p.pos-8, "tensor %q dimension %d is negative", name, d)
		}
		t.Dims[d] = int64(v)
		hi, lo := bits.Mul64(uint64(t.Elements), v)
		if hi != 0 || lo > math.MaxInt64 {
			return Tensor{}, p.errf(p.pos-8, "tensor %q: shape %v overflows 64 bits", name, t.Dims[:d+1])
		}
		t.Elements = int64(lo)
	}
	typ, err := p.u32(fmt.Sprintf("tensor %q type", name))
	if err != nil {
		return Tensor{}, err
	}
	t.Type = TensorType(typ)
	block, blockBytes, ok := t.Type.BlockSize()
	if !ok {
		return Tensor{}, p.errf(p.pos-4, "tensor %q: unknown ggml type %d", name, typ)
	}
	if row := t.Elements; nd > 0 && t.Dims[0]%block != 0 || nd == 0 && row%block != 0 {
		if nd > 0 {
			row = t.Dims[0]
		}
		return Tensor{}, p.errf(p.pos-4, "tensor %q: a row of %d elements is not a whole number of %s blocks (%d)", name, row, t.Type, block)
	}
	hi, lo := bits.Mul64(uint64(t.Elements/block), uint64(blockBytes))
	if hi != 0 || lo > math.MaxInt64 {
		return Tensor{}, p.errf(p.pos-4, "tensor %q: %d %s elements overflow 64 bits of bytes", name, t.Elements, t.Type)
	}
	t.Size = int64(lo)
	off, err := p.u64(fmt.Sprintf("tensor %q offset", name))
	if err != nil {
		return Tensor{}, err
	}
	if off > math.MaxInt64 {
		return Tensor{}, p.errf(p.pos-8, "tensor %q: offset %d is past any file", name, off)
	}
	t.Offset = int64(off)
	return t, nil
}

// checkData checks every tensor's data range: aligned, inside the file,
// not overlapping another tensor's.
func (f *File) checkData() error {
	if len(f.Tensors) == 0 {
		return nil
	}
	if f.DataOffset > f.Size {
		return &FormatError{Offset: f.Size, Msg: fmt.Sprintf("tensor data would start at byte %d, past the end of the %d-byte file", f.DataOffset, f.Size)}
	}
	room := f.Size - f.DataOffset
	order := make([]int, len(f.Tensors))
	for i, t := range f.Tensors {
		order[i] = i
		switch {
		case t.Offset%f.Alignment != 0:
			return &FormatError{Offset: f.DataOffset, Msg: fmt.Sprintf("tensor %q: data offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)}
		case t.Offset > room || t.Size > room-t.Offset:
			return &FormatError{Offset: f.DataOffset, Msg: fmt.Sprintf("tensor %q: data [%d, +%d) runs past the end of the file (%d bytes of data)", t.Name, t.Offset, t.Size, room)}
		}
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	var prev *Tensor
	for _, i := range order {
		t := &f.Tensors[i]
		if t.Size == 0 {
			continue
		}
		if prev != nil && t.Offset < prev.Offset+prev.Size {
			return &FormatError{Offset: f.DataOffset, Msg: fmt.Sprintf("tensors %q [%d, +%d) and %q [%d, +%d) overlap", prev.Name, prev.Offset, prev.Size, t.Name, t.Offset, t.Size)}
		}
		prev = t
	}
	return nil
}

// Lookup returns the metadata entry for key.
func (f *File) Lookup(key string) (KV, bool) {
	i, ok := f.keys[key]
	if !ok {
		return KV{}, false
	}
	return f.KVs[i], true
}

// String returns a string value kept whole.
func (f *File) String(key string) (string, bool) {
	kv, ok := f.Lookup(key)
	if !ok || kv.Type != TypeString || kv.Truncated {
		return "", false
	}
	return kv.Value.(string), true
}

// Uint returns a non-negative integer value of any integer type.
func (f *File) Uint(key string) (uint64, bool) {
	kv, ok := f.Lookup(key)
	if !ok {
		return 0, false
	}
	switch v := kv.Value.(type) {
	case uint64:
		return v, true
	case int64:
		if v >= 0 {
			return uint64(v), true
		}
	}
	return 0, false
}

// Architecture is general.architecture ("llama"), or "".
func (f *File) Architecture() string { s, _ := f.String("general.architecture"); return s }

// Name is general.name, or "".
func (f *File) Name() string { s, _ := f.String("general.name"); return s }

// FileType is general.file_type, the llama_ftype the file was quantized to.
func (f *File) FileType() (uint32, bool) {
	v, ok := f.Uint("general.file_type")
	if !ok || v > math.MaxUint32 {
		return 0, false
	}
	return uint32(v), true
}

// ContextLength is <architecture>.context_length.
func (f *File) ContextLength() (uint64, bool) {
	arch := f.Architecture()
	if arch == "" {
		return 0, false
	}
	return f.Uint(arch + ".context_length")
}

// Split returns the split number (0-based) and count of a file written by
// gguf-split; ok is false for a file that is not part of a split.
func (f *File) Split() (no, count uint64, ok bool) {
	count, ok = f.Uint("split.count")
	if !ok || count <= 1 {
		return 0, 0, false
	}
	no, _ = f.Uint("split.no")
	return no, count, true
}

// ParameterCount is the sum of the element counts of all tensors.
func (f *File) ParameterCount() uint64 {
	var n uint64
	for _, t := range f.Tensors {
		n += uint64(t.Elements)
	}
	return n
}

// TypeCount is how many tensors have one type.
type TypeCount struct {
	Type  TensorType
	Count int
}

// TensorTypes counts tensors by type, most frequent first (ties by type).
func (f *File) TensorTypes() []TypeCount {
	m := map[TensorType]int{}
	for _, t := range f.Tensors {
		m[t.Type]++
	}
	out := make([]TypeCount, 0, len(m))
	for t, n := range m {
		out = append(out, TypeCount{t, n})
	}
	SortTypeCounts(out)
	return out
}

// SortTypeCounts orders counts most frequent first, ties by type.
func SortTypeCounts(out []TypeCount) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Type < out[j].Type
	})
}

// FormatTypeCounts writes counts as "Q4_K=193,F32=65".
func FormatTypeCounts(counts []TypeCount) string {
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprintf("%s=%d", c.Type, c.Count)
	}
	return strings.Join(parts, ",")
}
