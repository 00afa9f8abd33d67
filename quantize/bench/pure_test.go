package bench

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestSimilarity(t *testing.T) {
	f32 := func(name string, shape []int64, v ...float32) Tensor {
		return Tensor{Name: name, DType: Float32, Shape: shape, Data: v}
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name                  string
		ref, got              Tensor
		cos, mse, mae, maxAbs float64
		top1                  float64 // -1: not computed
	}{
		{"identical", f32("y", []int64{4}, 1, 2, 3, 4), f32("y", []int64{4}, 1, 2, 3, 4), 1, 0, 0, 0, -1},
		{"scaled keeps cosine", f32("y", []int64{2}, 1, 2), f32("y", []int64{2}, 2, 4), 1, 2.5, 1.5, 2, -1},
		{"opposite", f32("y", []int64{2}, 1, 0), f32("y", []int64{2}, -1, 0), -1, 2, 1, 2, -1},
		{"both zero", f32("y", []int64{2}, 0, 0), f32("y", []int64{2}, 0, 0), 1, 0, 0, 0, -1},
		{"one zero", f32("y", []int64{2}, 1, 1), f32("y", []int64{2}, 0, 0), 0, 1, 1, 1, -1},
		{"logits top1 half", f32("logits", []int64{2, 2}, 1, 0, 0, 1), f32("logits", []int64{2, 2}, 1, 0, 1, 0), 0.5, 0.5, 0.5, 1, 0.5},
		{"probabilities top1", f32("out", []int64{1, 3}, 0.2, 0.7, 0.1), f32("out", []int64{1, 3}, 0.2, 0.7, 0.1), 1, 0, 0, 0, 1},
		{"nan poisons", f32("y", []int64{2}, 1, 2), f32("y", []int64{2}, 1, nan), math.NaN(), math.NaN(), math.NaN(), math.NaN(), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Similarity(tc.ref, tc.got)
			if err != nil {
				t.Fatal(err)
			}
			near := func(a, b float64) bool {
				if math.IsNaN(b) {
					return math.IsNaN(a)
				}
				return math.Abs(a-b) < 1e-9
			}
			if !near(q.Cosine, tc.cos) || !near(q.MSE, tc.mse) || !near(q.MAE, tc.mae) || !near(q.MaxAbs, tc.maxAbs) {
				t.Errorf("got %+v, want cos %v mse %v mae %v max %v", q, tc.cos, tc.mse, tc.mae, tc.maxAbs)
			}
			switch {
			case tc.top1 < 0 && q.Top1 != nil:
				t.Errorf("top1 = %v, want none", *q.Top1)
			case tc.top1 >= 0 && (q.Top1 == nil || *q.Top1 != tc.top1):
				t.Errorf("top1 = %v, want %v", q.Top1, tc.top1)
			}
		})
	}
	if _, err := Similarity(f32("y", []int64{2}, 1, 2), f32("y", []int64{1, 2}, 1, 2)); err == nil {
		t.Error("shape mismatch: no error")
	}
	if _, err := Similarity(Tensor{Name: "i", DType: Int64, Shape: []int64{1}, Data: []int64{1}}, f32("i", []int64{1}, 1)); err == nil {
		t.Error("int output: no error")
	}
}

func TestJudge(t *testing.T) {
	r := &Report{Quality: map[string]Quality{
		"good": {Cosine: 0.999, MSE: 0.001, MAE: 0.01},
		"bad":  {Cosine: 0.5, MSE: 0.02, MAE: 0.01},
		"nan":  {Cosine: math.NaN(), MSE: math.NaN(), MAE: math.NaN()},
	}}
	r.Judge(DefaultGates)
	if r.Gates.Passed || !slices.Equal(r.Gates.Failing, []string{"bad", "nan"}) || len(r.Gates.Failures) != 5 {
		t.Errorf("gates %+v", r.Gates)
	}
	r = &Report{}
	r.Judge(DefaultGates)
	if !r.Gates.Passed {
		t.Error("no baseline: gates failed")
	}
}

func TestSummarize(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x * float64(time.Millisecond))
		}
		return out
	}
	l := Summarize(ms(5, 1, 3, 2, 4))
	if l.P50 != 3 || math.Abs(l.P95-4.8) > 1e-9 || l.Mean != 3 || math.Abs(l.Std-math.Sqrt(2.5)) > 1e-9 || l.Min != 1 || l.Max != 5 {
		t.Errorf("summary %+v", l)
	}
	if l := Summarize(ms(7)); l.P50 != 7 || l.P95 != 7 || l.Std != 0 {
		t.Errorf("one run: %+v", l)
	}
}

func TestHalf(t *testing.T) {
	for _, f := range []float32{0, 1, -2, 0.5, 65504, 6.1035156e-05, 5.9604645e-08, float32(math.Inf(1))} {
		if got := HalfToFloat32(Float32ToHalf(f)); got != f {
			t.Errorf("%v -> %v", f, got)
		}
	}
	if h := Float32ToHalf(1e6); h != 0x7c00 {
		t.Errorf("1e6 -> %#x, want +inf", h)
	}
	if got := HalfToFloat32(Float32ToHalf(1.0009765625 + 0.0001)); got != 1.0009765625 {
		t.Errorf("rounding: %v", got)
	}
}

func TestShapes(t *testing.T) {
	in := ValueInfo{Name: "ids", DType: Int64, Shape: []Dim{{Value: -1, Param: "batch"}, {Value: -1, Param: "seq"}, {Value: 8}}}
	for _, tc := range []struct {
		flag    string
		want    []int64
		wantErr string
	}{
		{"ids=2x16x8", []int64{2, 16, 8}, ""},
		{"ids=1x16x9", nil, "fixes it at 8"},
		{"ids=1x16", nil, "declares 3"},
		{"", nil, "--shape ids=1xNx8"},
	} {
		var explicit []int64
		if tc.flag != "" {
			_, s, err := ParseShapeFlag(tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			explicit = s
		}
		got, err := ResolveShape(in, explicit)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.flag, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.flag, got, err, tc.want)
		}
	}
	for _, bad := range []string{"x", "=1x2", "x=1xa", "x=-1"} {
		if _, _, err := ParseShapeFlag(bad); err == nil {
			t.Errorf("ParseShapeFlag(%q): no error", bad)
		}
	}
	if _, s, err := ParseShapeFlag("sr="); err != nil || len(s) != 0 || s == nil {
		t.Errorf("scalar shape: %v %v", s, err)
	}
}

func TestNPYRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []Tensor{
		{Name: "a", DType: Float32, Shape: []int64{2, 3}, Data: []float32{1, 2, 3, 4, 5, -6}},
		{Name: "b", DType: Int64, Shape: []int64{3}, Data: []int64{1, -2, 1 << 40}},
		{Name: "c", DType: Bool, Shape: []int64{2}, Data: []bool{true, false}},
		{Name: "d", DType: Float16, Shape: []int64{1}, Data: []uint16{Float32ToHalf(1.5)}},
		{Name: "e", DType: Int32, Shape: []int64{}, Data: []int32{7}},
		{Name: "f", DType: Uint8, Shape: []int64{0, 4}, Data: []uint8{}},
	} {
		p := filepath.Join(dir, tt.Name+".npy")
		if err := WriteNPY(p, tt); err != nil {
			t.Fatal(err)
		}
		got, err := ReadNPY(p, tt.Name)
		if err != nil {
			t.Fatalf("%s: %v", tt.Name, err)
		}
		if got.DType != tt.DType || !slices.Equal(got.Shape, tt.Shape) || got.Len() != tt.Len() {
			t.Errorf("%s: got %+v, want %+v", tt.Name, got, tt)
		}
		a, _ := got.Float64s()
		b, _ := tt.Float64s()
		if !slices.Equal(a, b) {
			t.Errorf("%s: values %v, want %v", tt.Name, a, b)
		}
	}
}

func TestNPYRejectsHostileFiles(t *testing.T) {
	dir := t.TempDir()
	header := func(h string) []byte {
		b := []byte("\x93NUMPY\x01\x00")
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
		return append(b, h...)
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"magic", "bad magic", []byte("GIF89a....")},
		{"short", "not a .npy", []byte("\x93NU")},
		{"huge shape", "needs", header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }")},
		{"overflow shape", "overflows", header("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 4), }")},
		{"header past end", "does not fit", append([]byte("\x93NUMPY\x01\x00"), 0xff, 0xff)},
		{"big endian", "not supported", header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }")},
		{"fortran", "Fortran", header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }")},
		{"object", "not supported", header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }")},
		{"truncated data", "needs 8 data bytes", append(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"), 0, 0, 0, 0)},
		{"negative dim", "bad dimension", header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".npy")
		if err := os.WriteFile(p, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadNPY(p, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestReadModelInfo(t *testing.T) {
	dir := t.TempDir()
	info, err := ReadModelInfo(writeClassifier(t, dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "x" || info.Inputs[0].DType != Float32 ||
		!slices.Equal(info.Inputs[0].Shape, []Dim{{Value: -1, Param: "batch"}, {Value: 8}}) {
		t.Errorf("inputs %+v", info.Inputs)
	}
	if len(info.Outputs) != 2 || info.Outputs[0].Name != "logits" || info.Outputs[1].Name != "probs" {
		t.Errorf("outputs %+v", info.Outputs)
	}
	if !slices.Equal(info.ExternalData, []string{"classifier.onnx.data"}) {
		t.Errorf("external data %v", info.ExternalData)
	}
	files, err := ModelFiles(filepath.Join(dir, "classifier.onnx"), info)
	if err != nil || len(files) != 2 || files[1].Bytes != 128 {
		t.Errorf("files %+v %v", files, err)
	}
	if _, err := ModelFiles(filepath.Join(dir, "classifier.onnx"), &ModelInfo{ExternalData: []string{"../etc/passwd"}}); err == nil {
		t.Error("external data outside the directory: no error")
	}

	mixed, err := ReadModelInfo(writeMixed(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := mixed.Inputs[1]; got.Name != "sr" || got.DType != Int64 || got.Shape == nil || len(got.Shape) != 0 {
		t.Errorf("scalar input %+v", got)
	}
}

func TestReadModelInfoRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	graphWith := func(inner []byte) []byte {
		b := protowire.AppendTag(nil, 7, protowire.BytesType)
		return protowire.AppendBytes(b, inner)
	}
	// A graph field whose length claims more bytes than the file has.
	lying := protowire.AppendTag(nil, 7, protowire.BytesType)
	lying = protowire.AppendVarint(lying, 1<<40)
	// An input whose ValueInfo claims to be 2 MiB (over the limit) inside
	// a graph that really is that long.
	bigInput := protowire.AppendTag(nil, 11, protowire.BytesType)
	bigInput = protowire.AppendBytes(bigInput, make([]byte, 2<<20))
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no graph", nil},
		{"text", "", []byte("this is not a model at all")},
		{"lying length", "runs past", lying},
		{"oversized input", "more than the", graphWith(bigInput)},
		{"truncated varint", "unexpected EOF", []byte{0x08, 0xff}},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
		if err := os.WriteFile(p, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadModelInfo(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestLibraryPath(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	if _, err := LibraryPath("/does/not/exist.so"); err == nil || !strings.Contains(err.Error(), "--ort-lib") {
		t.Errorf("missing --ort-lib file: %v", err)
	}
	t.Setenv(LibraryEnv, "/does/not/exist.so")
	if _, err := LibraryPath(""); err == nil || !strings.Contains(err.Error(), LibraryEnv) {
		t.Errorf("missing $%s file: %v", LibraryEnv, err)
	}
	lib := filepath.Join(t.TempDir(), "lib.so")
	os.WriteFile(lib, []byte("x"), 0o644)
	t.Setenv(LibraryEnv, lib)
	if p, err := LibraryPath(""); err != nil || p != lib {
		t.Errorf("env: %q %v", p, err)
	}
	// Outside any checkout, with no env: the error names `make ort`.
	t.Setenv(LibraryEnv, "")
	t.Chdir(t.TempDir())
	if p, err := LibraryPath(""); err == nil {
		// The test binary lives in a temp dir, not the checkout, so nothing
		// should be found.
		t.Errorf("found %s outside the checkout", p)
	} else if !strings.Contains(err.Error(), "`make ort`") {
		t.Errorf("error %q does not name `make ort`", err)
	}
}

func TestGivenInputs(t *testing.T) {
	info := &ModelInfo{Inputs: []ValueInfo{
		{Name: "h", DType: Float16, Shape: []Dim{{Value: 2}}},
		{Name: "ids", DType: Int64, Shape: []Dim{{Value: 2}}},
	}}
	given := map[string]Tensor{"h": {Name: "h", DType: Float32, Shape: []int64{2}, Data: []float32{1.5, -2}}}
	got, err := generate(info, map[string][]int64{}, given, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].DType != Float16 || !slices.Equal(got[0].Data.([]uint16), []uint16{Float32ToHalf(1.5), Float32ToHalf(-2)}) {
		t.Errorf("float32 file for a float16 input: %+v", got[0])
	}
	given = map[string]Tensor{"ids": {Name: "ids", DType: Float32, Shape: []int64{2}, Data: []float32{1, 2}}}
	if _, err := generate(info, nil, given, 1); err == nil || !strings.Contains(err.Error(), "the model wants int64") {
		t.Errorf("float file for an int64 input: %v", err)
	}
}

func TestSizeNotSpeed(t *testing.T) {
	for _, tc := range []struct {
		speedup, size  float64
		mode, provider string
		want           string // substring; "" means no statement
	}{
		{0.88, 0.5, "fp16", "cpu", "fp16 buys size, not speed, on this machine: 50% of the baseline's size but 0.88x its speed: onnxruntime's CPU provider"},
		{0.73, 0.16, "int4", "cpu", "int4 buys size, not speed"},
		{0.58, 0.27, "int8", "cpu", "0.58x its speed: the integer kernels"},
		{0.9, 0.5, "", "cuda", "this model buys size, not speed"},
		{1.0, 0.25, "int8", "cpu", ""}, // as fast: nothing to say
		{2.4, 0.25, "int8", "cpu", ""}, // faster
		{0.9, 1.0, "int8", "cpu", ""},  // not smaller
		{0.9, 1.2, "fp16", "cpu", ""},  // larger and slower: not this statement
		{0, 0.5, "fp16", "cpu", ""},    // no speed measured
	} {
		got := sizeNotSpeed(tc.speedup, tc.size, tc.mode, tc.provider)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("sizeNotSpeed(%v, %v, %q, %q) = %q, want %q", tc.speedup, tc.size, tc.mode, tc.provider, got, tc.want)
		}
	}
}
