package gguf_test

import (
	"bytes"
	"errors"
	"sort"
	"testing"

	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
)

// FuzzParseGGUF feeds arbitrary bytes to the parser: it must return a
// header or a *FormatError, never panic or hang, and whatever it accepts
// must keep every tensor aligned, inside the file and apart from the others.
func FuzzParseGGUF(f *testing.F) {
	small := modelfiletest.LlamaGGUF()
	small.Tensors = small.Tensors[1:2] // one F32 tensor keeps seeds short
	var b bytes.Buffer
	if err := modelfiletest.EncodeGGUF(&b, small); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(head(1, 1).kvU32("general.alignment", 64).tensor("x", []uint64{8}, gguf.TensorF32, 0).pad(64).zeros(32).Bytes())
	f.Add(head(0, 1).str("a").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(2).str("x").str("yz").Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := gguf.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *gguf.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		if g.Alignment <= 0 || g.Alignment&(g.Alignment-1) != 0 {
			t.Fatalf("alignment %d", g.Alignment)
		}
		ts := append([]gguf.Tensor(nil), g.Tensors...)
		sort.Slice(ts, func(i, j int) bool { return ts[i].Offset < ts[j].Offset })
		end := int64(0)
		for _, tn := range ts {
			if tn.Offset%g.Alignment != 0 || tn.Size < 0 || g.DataOffset+tn.Offset+tn.Size > int64(len(data)) {
				t.Fatalf("tensor %q [%d,+%d) in a %d-byte file with data at %d", tn.Name, tn.Offset, tn.Size, len(data), g.DataOffset)
			}
			if tn.Size > 0 && tn.Offset < end {
				t.Fatalf("tensor %q overlaps", tn.Name)
			}
			if tn.Size > 0 {
				end = tn.Offset + tn.Size
			}
		}
		_ = g.ParameterCount()
		_ = g.TensorTypes()
		_, _ = g.ContextLength()
	})
}
