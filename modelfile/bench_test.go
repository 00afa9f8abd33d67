package modelfile_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
)

func benchOpen(b *testing.B, path string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := modelfile.Open(context.Background(), path, modelfile.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenGGUFVocab128K: a GGUF with a Llama-3-sized vocabulary
// (128256 tokens, with scores) and an 8 GiB sparse tensor.
func BenchmarkOpenGGUFVocab128K(b *testing.B) {
	spec := modelfiletest.LargeGGUF(8 << 30)
	tokens := make([]string, 128256)
	scores := make([]float32, len(tokens))
	for i := range tokens {
		tokens[i] = fmt.Sprintf("token-%d", i)
	}
	for i, kv := range spec.KVs {
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			spec.KVs[i].Value = tokens
		case "tokenizer.ggml.scores":
			spec.KVs[i].Value = scores
		}
	}
	p := filepath.Join(b.TempDir(), "llm.gguf")
	if err := modelfiletest.WriteSparseGGUF(p, spec); err != nil {
		b.Fatal(err)
	}
	benchOpen(b, p)
}

func BenchmarkOpenHFDirectory(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "hf")
	if err := modelfiletest.WriteHFDirectory(dir); err != nil {
		b.Fatal(err)
	}
	benchOpen(b, dir)
}

// BenchmarkRejectHostileStringArray: the parser's worst case per byte, a
// 1 GiB file that is one array of 134M empty strings (every one is read and
// checked), the last of which claims a byte past the end.
func BenchmarkRejectHostileStringArray(b *testing.B) {
	p := filepath.Join(b.TempDir(), "evil.gguf")
	const size = 1 << 30
	hdr := []byte(gguf.Magic)
	hdr = binary.LittleEndian.AppendUint32(hdr, 3)
	hdr = binary.LittleEndian.AppendUint64(hdr, 0)
	hdr = binary.LittleEndian.AppendUint64(hdr, 1)
	hdr = binary.LittleEndian.AppendUint64(hdr, 1)
	hdr = append(hdr, 'a')
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(gguf.TypeArray))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(gguf.TypeString))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(size-len(hdr)-8)/8)
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	f.Write(hdr)
	f.Truncate(size)
	f.WriteAt(binary.LittleEndian.AppendUint64(nil, 1), size-8)
	f.Close()
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := modelfile.Open(context.Background(), p, modelfile.Options{}); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkRejectHostileSafetensorsHeader: a 100 MiB header of 1.7M empty
// tensors, refused when what it would keep passes MaxRetained.
func BenchmarkRejectHostileSafetensorsHeader(b *testing.B) {
	var hdr []byte
	hdr = append(hdr, '{')
	for i := 0; len(hdr) < 100<<20-100; i++ {
		if i > 0 {
			hdr = append(hdr, ',')
		}
		hdr = fmt.Appendf(hdr, `"t%07d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`, i)
	}
	hdr = append(hdr, '}')
	p := filepath.Join(b.TempDir(), "evil.safetensors")
	if err := os.WriteFile(p, modelfiletest.SafetensorsWithHeader(string(hdr), nil), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(hdr)))
	for b.Loop() {
		if _, err := modelfile.Open(context.Background(), p, modelfile.Options{}); err == nil {
			b.Fatal("accepted")
		}
	}
}
