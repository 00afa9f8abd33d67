package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/modelfile/safetensors"
)

func encode(t testing.TB, tensors []modelfiletest.STensor, md map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := modelfiletest.EncodeSafetensors(&b, tensors, md); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestParse(t *testing.T) {
	data := encode(t, []modelfiletest.STensor{
		{Name: "w", DType: "BF16", Shape: []int64{64, 128}},
		{Name: "b", DType: "F32", Shape: []int64{128}},
		{Name: "scalar", DType: "I64", Shape: []int64{}},
		{Name: "empty", DType: "F16", Shape: []int64{0, 4}},
		{Name: "fp4", DType: "F4", Shape: []int64{4, 8}},
	}, map[string]string{"format": "pt"})
	f, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.DataOffset != 8+f.HeaderLen || f.HeaderLen%8 != 0 {
		t.Errorf("header %d, data at %d", f.HeaderLen, f.DataOffset)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	if len(f.Tensors) != 5 {
		t.Fatalf("%d tensors", len(f.Tensors))
	}
	w, ok := f.Tensor("w")
	if !ok || w.DType != "BF16" || w.Begin != 0 || w.End != 64*128*2 || w.Elements != 64*128 {
		t.Errorf("w = %+v", w)
	}
	if fp4, _ := f.Tensor("fp4"); fp4.End-fp4.Begin != 16 {
		t.Errorf("fp4 = %+v", fp4)
	}
	if got, want := f.ParameterCount(), uint64(64*128+128+1+0+32); got != want {
		t.Errorf("parameters %d, want %d", got, want)
	}
	if got := safetensors.FormatDTypeCounts(safetensors.CountDTypes(f)); got != "BF16=1,F16=1,F32=1,F4=1,I64=1" {
		t.Errorf("dtypes %q", got)
	}
}

func TestParseThreeShards(t *testing.T) {
	var files []*safetensors.File
	for _, shard := range modelfiletest.ThreeShards() {
		data := encode(t, shard, nil)
		f, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var params uint64
	for _, f := range files {
		params += f.ParameterCount()
	}
	if params != modelfiletest.WantShardedParameters {
		t.Errorf("parameters %d", params)
	}
	if got := safetensors.FormatDTypeCounts(safetensors.CountDTypes(files...)); got != modelfiletest.WantShardedDTypes {
		t.Errorf("dtypes %q", got)
	}
}

func file(header string, data int) []byte {
	return modelfiletest.SafetensorsWithHeader(header, make([]byte, data))
}

func TestParseHostile(t *testing.T) {
	huge := binary.LittleEndian.AppendUint64(nil, 200<<20)
	past := binary.LittleEndian.AppendUint64(nil, 1000)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short for the 8-byte header length"},
		{"header length over 100 MiB", append(huge, "{}"...), "over the 104857600-byte (100 MiB) limit"},
		{"header length past the file", append(past, "{}"...), "header length 1000 runs past the end of the 10-byte file"},
		{"header length 2^64-1", append(binary.LittleEndian.AppendUint64(nil, 1<<64-1), "{}"...), "over the"},
		{"header length zero", binary.LittleEndian.AppendUint64(nil, 0), "too short for a JSON object"},
		{"not JSON", file("hello", 0), "not valid JSON"},
		{"JSON array", file("[1,2]", 0), "not a JSON object"},
		{"truncated JSON", file(`{"a":{"dtype":"F32"`, 0), "ends early"},
		{"data after the object", file(`{}{}`, 0), "data after its JSON object"},
		{"garbage after the object", file(`{} x`, 0), "not valid JSON"},
		{"unknown dtype", file(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), `unknown dtype "F128"`},
		{"missing shape", file(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), "want dtype, shape and data_offsets"},
		{"entry not an object", file(`{"a":5}`, 0), `tensor "a"`},
		{"negative dimension", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "dimension 0 is -1"},
		{"fractional dimension", file(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), "dimension 0 is 1.5"},
		{"too many dimensions", file(`{"a":{"dtype":"F32","shape":[`+strings.Repeat("1,", 64)+`1],"data_offsets":[0,4]}}`, 4), "65 dimensions"},
		{"shape overflow", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), "overflows 64 bits"},
		{"bytes overflow", file(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}`, 4), "overflow 64 bits of bytes"},
		{"three offsets", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4), "3 numbers, want 2"},
		{"negative offset", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4), "data offset -4"},
		{"end before begin", file(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, 8), "end before they begin"},
		{"size mismatch", file(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20), "F32[2 3] needs 24 bytes, but data_offsets [0, 20] hold 20"},
		{"sub-byte remainder", file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), "not a whole number of bytes"},
		{"outside the file", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[1000000,1000004]}}`, 4), "runs past the end of the file (4 bytes of data)"},
		{"offset near 2^63", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}}`, 4), "runs past the end"},
		{"overlapping", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), `tensor "b" [4, 12) overlaps "a"`},
		{"same range twice", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "overlaps"},
		{"gap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), `bytes [4, 8) between "a" and tensor "b" belong to no tensor`},
		{"bytes after the last tensor", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 10), "bytes [4, 10) after the last tensor"},
		{"duplicate tensor", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), `names "a" twice`},
		{"metadata not strings", file(`{"__metadata__":{"x":1}}`, 0), `value of "x" is not a string`},
		{"metadata not an object", file(`{"__metadata__":[1]}`, 0), "not an object of strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := safetensors.Parse(bytes.NewReader(c.data), int64(len(c.data)))
			runtime.ReadMemStats(&after)
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to say %q", err, c.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("parsing allocated %d bytes", grew)
			}
		})
	}
}

// A header that declares its full 100 MiB but whose file is short is
// refused before a byte of it is read.
func TestParseHeaderLengthBoundsMemory(t *testing.T) {
	data := append(binary.LittleEndian.AppendUint64(nil, safetensors.MaxHeader), `{"a":`...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "runs past the end") {
		t.Fatalf("error %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Errorf("allocated %d bytes", grew)
	}
}

func TestParseMetadataPadding(t *testing.T) {
	// The header may be padded with spaces (the library pads to 8 bytes).
	data := file(`{"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}     `, 3)
	f, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["k"] != "v" || len(f.Tensors) != 1 {
		t.Errorf("%+v", f)
	}
}

func TestParseIndex(t *testing.T) {
	ix, err := safetensors.ParseIndex(strings.NewReader(`{"metadata":{"total_size":96},"weight_map":{"a":"m-2.safetensors","b":"m-1.safetensors","c":"m-2.safetensors"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ix.TotalSize != 96 {
		t.Errorf("total size %d", ix.TotalSize)
	}
	if got := strings.Join(ix.Shards(), ","); got != "m-1.safetensors,m-2.safetensors" {
		t.Errorf("shards %s", got)
	}
	if got := strings.Join(ix.TensorsIn("m-2.safetensors"), ","); got != "a,c" {
		t.Errorf("tensors in m-2: %s", got)
	}
	for _, c := range []struct{ in, want string }{
		{`[]`, "not a JSON object"},
		{`{}`, "no weight_map"},
		{`{"weight_map":{}}`, "no weight_map"},
		{`{"weight_map":{"a":1}}`, "weight_map of strings"},
		{`{"weight_map":{"a":""}}`, "empty file name"},
		{`{"weight_map":{"a":"x"}} {}`, "data after"},
	} {
		_, err := safetensors.ParseIndex(strings.NewReader(c.in))
		var fe *safetensors.FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseIndex(%s) = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestSniff(t *testing.T) {
	data := encode(t, modelfiletest.ThreeShards()[0], nil)
	if !safetensors.Sniff(data[:16], int64(len(data))) {
		t.Error("a safetensors file does not sniff as one")
	}
	for _, b := range [][]byte{[]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("# README\n\nhello"), file("{}", 0)[:9]} {
		if safetensors.Sniff(b, int64(len(b))) {
			t.Errorf("%q sniffs as safetensors", b)
		}
	}
}
