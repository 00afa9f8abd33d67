// Package safetensors reads and checks the header of a safetensors file (an
// 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data) and the index of a sharded set
// (model.safetensors.index.json). Tensor data is never read.
//
// The checks are those of the reference implementation (the safetensors
// crate): the header length is at most MaxHeader and inside the file; the
// header is one JSON object; every tensor's byte range matches its dtype and
// shape; and the ranges tile the data section exactly: no overlap, no gap,
// nothing outside, nothing after. The header is decoded as a stream, and
// what is kept (names, shapes, metadata) is bounded by MaxRetained, so a
// hostile header costs bounded memory whatever it declares.
package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// Limits of the parser.
const (
	// MaxHeader is the largest header the reference implementation reads.
	MaxHeader = 100 << 20
	// MaxRetained bounds the bytes kept of tensor names, shapes and metadata.
	MaxRetained = 32 << 20
	// MaxMetadataValue: a longer __metadata__ value keeps a prefix only.
	MaxMetadataValue = 4096
	// MaxRank bounds the dimensions of one tensor.
	MaxRank = 64
)

// MetadataKey is the header entry that holds string metadata, not a tensor.
const MetadataKey = "__metadata__"

// dtypeBits is the size in bits of each dtype the format defines.
var dtypeBits = map[string]int64{
	"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32,
	"I64": 64, "U64": 64, "F64": 64, "C64": 64,
	"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

// DTypeBits returns the size of one element of dtype in bits, and whether
// the dtype is known.
func DTypeBits(dtype string) (int64, bool) { b, ok := dtypeBits[dtype]; return b, ok }

// FormatError is a malformed safetensors header or index.
type FormatError struct {
	Msg string
}

func (e *FormatError) Error() string { return "safetensors: " + e.Msg }

func errf(format string, args ...any) error {
	return &FormatError{Msg: fmt.Sprintf(format, args...)}
}

// Tensor is one tensor of the header. Begin and End are offsets from
// File.DataOffset.
type Tensor struct {
	Name     string
	DType    string
	Shape    []int64
	Begin    int64
	End      int64
	Elements int64
}

// File is a parsed safetensors header.
type File struct {
	HeaderLen  int64 // bytes of JSON
	DataOffset int64 // 8 + HeaderLen
	Size       int64 // file size
	// Metadata is the __metadata__ map; values longer than
	// MaxMetadataValue keep a prefix.
	Metadata map[string]string
	// Tensors, in data order.
	Tensors []Tensor
	byName  map[string]int
}

// Sniff reports whether the first bytes of a file of size bytes look like
// a safetensors file: a plausible header length followed by '{'.
func Sniff(head []byte, size int64) bool {
	if len(head) < 9 || size < 10 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && n <= MaxHeader && n <= uint64(size-8) && head[8] == '{'
}

// Parse reads and checks the header of the safetensors file in r (size
// bytes). It returns a *FormatError for a malformed file, or the read
// error of r.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, errf("file is %d bytes, too short for the 8-byte header length", size)
	}
	var b [8]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(b[:])
	switch {
	case n > MaxHeader:
		return nil, errf("header length %d is over the %d-byte (100 MiB) limit", n, MaxHeader)
	case n > uint64(size-8):
		return nil, errf("header length %d runs past the end of the %d-byte file", n, size)
	case n < 2:
		return nil, errf("header length %d is too short for a JSON object", n)
	}
	f := &File{HeaderLen: int64(n), DataOffset: 8 + int64(n), Size: size, byName: map[string]int{}}
	cr := &countingReader{r: bufio.NewReaderSize(io.NewSectionReader(r, 8, int64(n)), 64<<10)}
	if err := f.decode(cr); err != nil {
		return nil, err
	}
	if err := f.checkRanges(); err != nil {
		return nil, err
	}
	for i, t := range f.Tensors {
		f.byName[t.Name] = i
	}
	return f, nil
}

// countingReader remembers read errors that are not the header's fault, so
// that they are not reported as bad JSON.
type countingReader struct {
	r   io.Reader
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

type entry struct {
	DType       *string        `json:"dtype"`
	Shape       *[]json.Number `json:"shape"`
	DataOffsets *[]json.Number `json:"data_offsets"`
}

func (f *File) decode(cr *countingReader) error {
	dec := json.NewDecoder(cr)
	dec.UseNumber()
	fail := func(what string, err error) error {
		if cr.err != nil {
			return fmt.Errorf("safetensors: read header: %w", cr.err)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errf("header is not valid JSON: %s at header byte %d", se.Error(), se.Offset)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errf("header JSON ends early (%s)", what)
		}
		return errf("header: %s: %v", what, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return fail("start", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errf("header is not a JSON object")
	}
	var retained int64
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail("key", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return errf("header names %q twice", name)
		}
		seen[name] = true
		retained += int64(len(name)) + 96
		if retained > MaxRetained {
			return errf("header holds more than %d MiB of tensor names and shapes", MaxRetained>>20)
		}
		if name == MetadataKey {
			if err := f.decodeMetadata(dec, fail); err != nil {
				return err
			}
			continue
		}
		var e entry
		if err := dec.Decode(&e); err != nil {
			return fail(fmt.Sprintf("tensor %q", name), err)
		}
		t, err := e.tensor(name)
		if err != nil {
			return err
		}
		retained += 8 * int64(len(t.Shape))
		f.Tensors = append(f.Tensors, t)
	}
	if _, err := dec.Token(); err != nil {
		return fail("end", err)
	}
	// The writer pads the header with spaces; anything else after the
	// object is not ours to ignore.
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return fail("after the object", err)
		}
		return errf("header has data after its JSON object")
	}
	return nil
}

func (f *File) decodeMetadata(dec *json.Decoder, fail func(string, error) error) error {
	tok, err := dec.Token()
	if err != nil {
		return fail(MetadataKey, err)
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errf("%s is not an object of strings", MetadataKey)
	}
	f.Metadata = map[string]string{}
	var kept int
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fail(MetadataKey, err)
		}
		vt, err := dec.Token()
		if err != nil {
			return fail(MetadataKey, err)
		}
		k, _ := kt.(string)
		v, ok := vt.(string)
		if !ok {
			return errf("%s: value of %q is not a string", MetadataKey, k)
		}
		if len(v) > MaxMetadataValue {
			v = v[:MaxMetadataValue]
		}
		// Metadata is for display: past 1 MiB the rest is checked, not kept.
		if kept += len(k) + len(v); kept <= 1<<20 {
			f.Metadata[k] = v
		}
	}
	if _, err := dec.Token(); err != nil {
		return fail(MetadataKey, err)
	}
	return nil
}

func (e *entry) tensor(name string) (Tensor, error) {
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return Tensor{}, errf("tensor %q: want dtype, shape and data_offsets", name)
	}
	t := Tensor{Name: name, DType: *e.DType, Elements: 1}
	bitsPer, ok := dtypeBits[t.DType]
	if !ok {
		return Tensor{}, errf("tensor %q: unknown dtype %q", name, t.DType)
	}
	if len(*e.Shape) > MaxRank {
		return Tensor{}, errf("tensor %q: %d dimensions (at most %d)", name, len(*e.Shape), MaxRank)
	}
	t.Shape = make([]int64, len(*e.Shape))
	for i, d := range *e.Shape {
		v, err := strconv.ParseUint(d.String(), 10, 63)
		if err != nil {
			return Tensor{}, errf("tensor %q: dimension %d is %s, not a non-negative integer", name, i, d)
		}
		t.Shape[i] = int64(v)
		hi, lo := bits.Mul64(uint64(t.Elements), v)
		if hi != 0 || lo > math.MaxInt64 {
			return Tensor{}, errf("tensor %q: shape %v overflows 64 bits", name, t.Shape[:i+1])
		}
		t.Elements = int64(lo)
	}
	if len(*e.DataOffsets) != 2 {
		return Tensor{}, errf("tensor %q: data_offsets has %d numbers, want 2", name, len(*e.DataOffsets))
	}
	var off [2]int64
	for i, d := range *e.DataOffsets {
		v, err := strconv.ParseUint(d.String(), 10, 63)
		if err != nil {
			return Tensor{}, errf("tensor %q: data offset %s is not a non-negative integer", name, d)
		}
		off[i] = int64(v)
	}
	t.Begin, t.End = off[0], off[1]
	if t.End < t.Begin {
		return Tensor{}, errf("tensor %q: data_offsets [%d, %d] end before they begin", name, t.Begin, t.End)
	}
	hi, lo := bits.Mul64(uint64(t.Elements), uint64(bitsPer))
	if hi != 0 || lo/8 > math.MaxInt64 {
		return Tensor{}, errf("tensor %q: %d %s elements overflow 64 bits of bytes", name, t.Elements, t.DType)
	}
	if lo%8 != 0 {
		return Tensor{}, errf("tensor %q: %d %s elements are not a whole number of bytes", name, t.Elements, t.DType)
	}
	if want := int64(lo / 8); t.End-t.Begin != want {
		return Tensor{}, errf("tensor %q: %s%v needs %d bytes, but data_offsets [%d, %d] hold %d", name, t.DType, t.Shape, want, t.Begin, t.End, t.End-t.Begin)
	}
	return t, nil
}

// checkRanges checks that the tensors tile the data section exactly.
func (f *File) checkRanges() error {
	data := f.Size - f.DataOffset
	for _, t := range f.Tensors {
		if t.End > data {
			return errf("tensor %q: data [%d, %d) runs past the end of the file (%d bytes of data)", t.Name, t.Begin, t.End, data)
		}
	}
	sort.SliceStable(f.Tensors, func(i, j int) bool {
		a, b := f.Tensors[i], f.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var end int64
	prev := "the start of the data"
	for _, t := range f.Tensors {
		switch {
		case t.Begin < end:
			return errf("tensor %q [%d, %d) overlaps %s (which ends at %d)", t.Name, t.Begin, t.End, prev, end)
		case t.Begin > end:
			return errf("bytes [%d, %d) between %s and tensor %q belong to no tensor", end, t.Begin, prev, t.Name)
		}
		end = t.End
		prev = strconv.Quote(t.Name)
	}
	if end != data {
		return errf("bytes [%d, %d) after the last tensor belong to no tensor", end, data)
	}
	return nil
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Tensor{}, false
	}
	return f.Tensors[i], true
}

// ParameterCount is the sum of the element counts of all tensors.
func (f *File) ParameterCount() uint64 {
	var n uint64
	for _, t := range f.Tensors {
		n += uint64(t.Elements)
	}
	return n
}

// DTypeCount is how many tensors have one dtype.
type DTypeCount struct {
	DType string
	Count int
}

// CountDTypes counts tensors by dtype over several files, most frequent
// first (ties by name).
func CountDTypes(files ...*File) []DTypeCount {
	m := map[string]int{}
	for _, f := range files {
		for _, t := range f.Tensors {
			m[t.DType]++
		}
	}
	out := make([]DTypeCount, 0, len(m))
	for d, n := range m {
		out = append(out, DTypeCount{d, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].DType < out[j].DType
	})
	return out
}

// FormatDTypeCounts writes counts as "BF16=290,F32=2".
func FormatDTypeCounts(counts []DTypeCount) string {
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprintf("%s=%d", c.DType, c.Count)
	}
	return strings.Join(parts, ",")
}
