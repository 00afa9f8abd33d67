package safetensors_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/modelfile/safetensors"
)

// FuzzParseSafetensors feeds arbitrary bytes to the parser: it must return
// a header or a *FormatError, never panic or hang, and whatever it accepts
// must have tensors that tile the data section exactly.
func FuzzParseSafetensors(f *testing.F) {
	var b bytes.Buffer
	if err := modelfiletest.EncodeSafetensors(&b, []modelfiletest.STensor{
		{Name: "a", DType: "F16", Shape: []int64{2, 2}},
		{Name: "b", DType: "U8", Shape: []int64{3}},
	}, map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(modelfiletest.SafetensorsWithHeader(`{"x":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, []byte{0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		end := int64(0)
		for _, tn := range h.Tensors {
			if tn.Begin != end || tn.End < tn.Begin {
				t.Fatalf("tensor %q [%d,%d) after %d", tn.Name, tn.Begin, tn.End, end)
			}
			end = tn.End
			if got, ok := h.Tensor(tn.Name); !ok || got.Begin != tn.Begin {
				t.Fatalf("tensor %q not found by name", tn.Name)
			}
		}
		if h.DataOffset+end != int64(len(data)) {
			t.Fatalf("tensors end at %d of %d", h.DataOffset+end, len(data))
		}
	})
}

// FuzzParseIndex: an index either parses to a non-empty weight map of
// non-empty names or is a *FormatError.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := safetensors.ParseIndex(bytes.NewReader(data))
		if err != nil {
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		if len(ix.WeightMap) == 0 || len(ix.Shards()) == 0 {
			t.Fatal("accepted an empty index")
		}
		for _, s := range ix.Shards() {
			if s == "" {
				t.Fatal("accepted an empty shard name")
			}
		}
	})
}
