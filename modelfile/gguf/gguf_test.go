package gguf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
)

func encode(t testing.TB, spec modelfiletest.GGUFSpec) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := modelfiletest.EncodeGGUF(&b, spec); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestParseLlama(t *testing.T) {
	data := encode(t, modelfiletest.LlamaGGUF())
	f, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 || f.Size != int64(len(data)) {
		t.Errorf("version %d alignment %d data offset %d size %d", f.Version, f.Alignment, f.DataOffset, f.Size)
	}
	if got := f.Architecture(); got != modelfiletest.WantGGUFArchitecture {
		t.Errorf("architecture %q", got)
	}
	if got := f.Name(); got != modelfiletest.WantGGUFName {
		t.Errorf("name %q", got)
	}
	if n, ok := f.ContextLength(); !ok || n != modelfiletest.WantGGUFContextLength {
		t.Errorf("context length %d %v", n, ok)
	}
	if ft, ok := f.FileType(); !ok || gguf.FileTypeName(ft) != modelfiletest.WantGGUFFileType {
		t.Errorf("file type %d %v", ft, ok)
	}
	if got := f.ParameterCount(); got != modelfiletest.WantGGUFParameters {
		t.Errorf("parameters %d, want %d", got, modelfiletest.WantGGUFParameters)
	}
	if got := gguf.FormatTypeCounts(f.TensorTypes()); got != modelfiletest.WantGGUFTensorType {
		t.Errorf("tensor types %q, want %q", got, modelfiletest.WantGGUFTensorType)
	}
	kv, ok := f.Lookup("tokenizer.ggml.tokens")
	if !ok || kv.Type != gguf.TypeArray || kv.ElemType != gguf.TypeString || kv.Len != 64 {
		t.Errorf("tokens %+v %v", kv, ok)
	}
	if kv, _ := f.Lookup("llama.rope.freq_base"); kv.Value != float64(10000) {
		t.Errorf("rope freq base %v", kv.Value)
	}
	if kv, _ := f.Lookup("tokenizer.ggml.add_bos_token"); kv.Value != true {
		t.Errorf("add_bos_token %v", kv.Value)
	}
	if len(f.Tensors) != modelfiletest.WantGGUFTensors {
		t.Fatalf("%d tensors", len(f.Tensors))
	}
	// token_embd: 256x64 Q4_K = 64 rows of one 144-byte block.
	te := f.Tensors[0]
	if te.Name != "token_embd.weight" || te.Size != 64*144 || te.Elements != 256*64 || te.Offset != 0 || te.Type.String() != "Q4_K" {
		t.Errorf("token_embd %+v", te)
	}
	// The last tensor's data ends within the file's last alignment block.
	last := f.Tensors[len(f.Tensors)-1]
	if end := f.DataOffset + last.Offset + last.Size; end > f.Size || f.Size-end >= 32 {
		t.Errorf("last tensor ends at %d of %d", end, f.Size)
	}
	if _, _, ok := f.Split(); ok {
		t.Error("not a split file")
	}
}

func TestParseAlignmentAndVersion2(t *testing.T) {
	spec := modelfiletest.LlamaGGUF()
	spec.Version, spec.Alignment = 2, 64
	data := encode(t, spec)
	f, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 2 || f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
	}
	for _, tn := range f.Tensors {
		if tn.Offset%64 != 0 {
			t.Errorf("%s at %d", tn.Name, tn.Offset)
		}
	}
}

// builder writes GGUF headers by hand, for files the writer refuses to make.
type builder struct{ bytes.Buffer }

func (b *builder) u32(v uint32) *builder { b.Write(binary.LittleEndian.AppendUint32(nil, v)); return b }
func (b *builder) u64(v uint64) *builder { b.Write(binary.LittleEndian.AppendUint64(nil, v)); return b }
func (b *builder) str(s string) *builder { b.u64(uint64(len(s))); b.WriteString(s); return b }
func (b *builder) kvU32(k string, v uint32) *builder {
	return b.str(k).u32(uint32(gguf.TypeUint32)).u32(v)
}
func (b *builder) tensor(name string, dims []uint64, typ gguf.TensorType, off uint64) *builder {
	b.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		b.u64(d)
	}
	return b.u32(uint32(typ)).u64(off)
}
func (b *builder) pad(n int) *builder {
	for b.Len()%n != 0 {
		b.WriteByte(0)
	}
	return b
}
func (b *builder) zeros(n int) *builder { b.Write(make([]byte, n)); return b }

func head(nTensors, nKV uint64) *builder {
	b := &builder{}
	b.WriteString("GGUF")
	return b.u32(3).u64(nTensors).u64(nKV)
}

func TestParseHostile(t *testing.T) {
	valid := encode(t, modelfiletest.LlamaGGUF())
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "magic: 4 bytes past the end"},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "not a GGUF file"},
		{"version 1", []byte("GGUF\x01\x00\x00\x00"), "version 1 is not supported"},
		{"version 4", []byte("GGUF\x04\x00\x00\x00"), "version 4 is not supported"},
		{"big-endian", []byte("GGUF\x00\x00\x00\x03"), "big-endian"},
		{"huge tensor count", head(1<<60, 0).Bytes(), "tensor count 1152921504606846976 cannot fit"},
		{"tensor count over the file", head(10, 0).zeros(100).Bytes(), "tensor count 10 cannot fit"},
		{"huge kv count", head(0, 1<<62).Bytes(), "metadata count 4611686018427387904 cannot fit"},
		{"key length past the end", head(0, 1).u64(1000).zeros(16).Bytes(), "metadata key 0: 1000 bytes past the end"},
		{"key length over the limit", head(0, 1).u64(1 << 17).zeros(16).Bytes(), "over the 65535-byte limit"},
		{"string value past the end", head(0, 1).str("general.name").u32(uint32(gguf.TypeString)).u64(1 << 62).zeros(8).Bytes(), `value of "general.name": 4611686018427387904 bytes past the end`},
		{"string array length past the end", head(0, 1).str("tokenizer.ggml.tokens").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(1 << 50).zeros(16).Bytes(), "strings cannot fit"},
		{"string array element past the end", head(0, 1).str("t").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(2).str("a").u64(1 << 40).zeros(8).Bytes(), `"t" element 1: 1099511627776 bytes past the end`},
		{"scalar array overflowing", head(0, 1).str("s").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeUint64)).u64(1 << 62).zeros(8).Bytes(), "elements run past the end"},
		{"nested array", head(0, 1).str("n").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeArray)).u64(1).zeros(32).Bytes(), "array of arrays"},
		{"unknown value type", head(0, 1).str("u").u32(13).zeros(16).Bytes(), `"u": unknown value type 13`},
		{"unknown array element type", head(0, 1).str("u").u32(uint32(gguf.TypeArray)).u32(99).u64(1).zeros(16).Bytes(), "unknown array element type 99"},
		{"bool not 0 or 1", append(head(0, 1).str("b").u32(uint32(gguf.TypeBool)).Bytes(), 2), "neither 0 nor 1"},
		{"duplicate key", head(0, 2).kvU32("a", 1).kvU32("a", 2).zeros(8).Bytes(), `key "a" appears twice`},
		{"empty key", head(0, 1).str("").u32(uint32(gguf.TypeUint32)).u32(0).zeros(8).Bytes(), "empty or not UTF-8"},
		{"alignment not a power of two", head(0, 1).kvU32("general.alignment", 48).zeros(8).Bytes(), "power of two"},
		{"alignment zero", head(0, 1).kvU32("general.alignment", 0).zeros(8).Bytes(), "power of two"},
		{"alignment of the wrong type", head(0, 1).str("general.alignment").u32(uint32(gguf.TypeUint64)).u64(32).zeros(8).Bytes(), "power of two uint32"},
		{"too many dimensions", head(1, 0).tensor("x", []uint64{1, 1, 1, 1, 1}, gguf.TensorF32, 0).zeros(32).Bytes(), "5 dimensions"},
		{"tensor name too long", head(1, 0).tensor(strings.Repeat("n", 64), []uint64{1}, gguf.TensorF32, 0).zeros(32).Bytes(), "over the 63-byte limit"},
		{"negative dimension", head(1, 0).tensor("x", []uint64{1 << 63}, gguf.TensorF32, 0).zeros(32).Bytes(), "dimension 0 is negative"},
		{"shape overflow", head(1, 0).tensor("x", []uint64{1 << 40, 1 << 40}, gguf.TensorF32, 0).zeros(32).Bytes(), "overflows 64 bits"},
		{"bytes overflow", head(1, 0).tensor("x", []uint64{1 << 62}, gguf.TensorF32, 0).zeros(32).Bytes(), "overflow 64 bits of bytes"},
		{"unknown tensor type", head(1, 0).tensor("x", []uint64{32}, 4, 0).zeros(32).Bytes(), "unknown ggml type 4"},
		{"row not whole blocks", head(1, 0).tensor("x", []uint64{100, 2}, gguf.TensorQ4_K, 0).zeros(32).Bytes(), "not a whole number of Q4_K blocks (256)"},
		{"duplicate tensor", head(2, 0).tensor("x", []uint64{8}, gguf.TensorF32, 0).tensor("x", []uint64{8}, gguf.TensorF32, 32).pad(32).zeros(64).Bytes(), `tensor "x" appears twice`},
		{"offset outside the file", head(1, 0).tensor("x", []uint64{8}, gguf.TensorF32, 1<<20).pad(32).zeros(32).Bytes(), "runs past the end of the file"},
		{"data past the end", head(1, 0).tensor("x", []uint64{64}, gguf.TensorF32, 0).pad(32).zeros(32).Bytes(), "runs past the end of the file"},
		{"offset near 2^63", head(1, 0).tensor("x", []uint64{8}, gguf.TensorF32, 1<<63-32).pad(32).zeros(32).Bytes(), "runs past the end of the file"},
		{"offset past 2^63", head(1, 0).tensor("x", []uint64{8}, gguf.TensorF32, 1<<63).pad(32).zeros(32).Bytes(), "past any file"},
		{"misaligned", head(1, 0).tensor("x", []uint64{8}, gguf.TensorF32, 4).pad(32).zeros(64).Bytes(), "not a multiple of the alignment 32"},
		{"overlapping", head(2, 0).tensor("a", []uint64{16}, gguf.TensorF32, 0).tensor("b", []uint64{8}, gguf.TensorF32, 32).pad(32).zeros(64).Bytes(), `"a" [0, +64) and "b" [32, +32) overlap`},
		{"header ends before data", head(1, 0).tensor("x", []uint64{8}, gguf.TensorF32, 0).Bytes(), "past the end of the"},
		{"truncated", valid[:len(valid)/2], ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := gguf.Parse(bytes.NewReader(c.data), int64(len(c.data)))
			runtime.ReadMemStats(&after)
			var fe *gguf.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to say %q", err, c.want)
			}
			// Whatever the header declares, parsing it costs what the
			// parser's buffers cost, not what the counts say.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("parsing allocated %d bytes", grew)
			}
		})
	}
}

// Every prefix of a valid file is refused with a FormatError (never a
// panic, never accepted with tensors past the end).
func TestParseEveryTruncation(t *testing.T) {
	data := encode(t, modelfiletest.LlamaGGUF())
	full, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Every cut inside the header, then cuts through the data.
	var cuts []int
	for n := 0; n < int(full.DataOffset)+64; n++ {
		cuts = append(cuts, n)
	}
	for n := int(full.DataOffset) + 64; n < len(data); n += 997 {
		cuts = append(cuts, n)
	}
	for _, n := range cuts {
		f, err := gguf.Parse(bytes.NewReader(data[:n]), int64(n))
		if err == nil {
			// Only the padding after the last tensor may go.
			last := f.Tensors[len(f.Tensors)-1]
			if f.DataOffset+last.Offset+last.Size > int64(n) {
				t.Fatalf("prefix %d accepted with data past its end", n)
			}
			continue
		}
		var fe *gguf.FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("prefix %d: %v (%T)", n, err, err)
		}
	}
}

func TestFileTypeNames(t *testing.T) {
	for ft, want := range map[uint32]string{0: "F32", 1: "F16", 7: "Q8_0", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16", 99: "file_type(99)"} {
		if got := gguf.FileTypeName(ft); got != want {
			t.Errorf("FileTypeName(%d) = %q, want %q", ft, got, want)
		}
	}
}

// A vocabulary larger than the read buffer, with empty and long strings,
// is walked exactly: the keys after it are read at the right place.
func TestParseLargeVocabulary(t *testing.T) {
	spec := modelfiletest.LlamaGGUF()
	tokens := make([]string, 50000)
	for i := range tokens {
		tokens[i] = strings.Repeat("x", i%37) // lengths 0..36, many empty
	}
	tokens[25000] = strings.Repeat("long", 40000) // 160 KB, past the buffer
	for i, kv := range spec.KVs {
		if kv.Key == "tokenizer.ggml.tokens" {
			spec.KVs[i].Value = tokens
		}
	}
	spec.KVs = append(spec.KVs, modelfiletest.GGUFKV{Key: "after.vocab", Type: gguf.TypeUint64, Value: uint64(0xfeedface)})
	data := encode(t, spec)
	f, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if kv, _ := f.Lookup("tokenizer.ggml.tokens"); kv.Len != 50000 {
		t.Errorf("tokens %+v", kv)
	}
	if v, ok := f.Uint("after.vocab"); !ok || v != 0xfeedface {
		t.Errorf("after.vocab = %x %v", v, ok)
	}
	if f.ParameterCount() != modelfiletest.WantGGUFParameters {
		t.Errorf("parameters %d", f.ParameterCount())
	}
}
