package onnx_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

func readAll(t *testing.T, m *onnx.Model, tp *onnxpb.TensorProto) []byte {
	t.Helper()
	d, err := m.TensorData(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(io.NewSectionReader(d, 0, d.Size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSynthRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path, err := synth.Generate(dir, synth.Config{Layers: 2, Hidden: 64, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	onnxtest.Check(t, path)
	files, err := onnx.ExternalDataFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "model.onnx.data"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != "model.onnx.data" || files[0].MinSize != st.Size() {
		t.Fatalf("ExternalDataFiles = %+v, want one model.onnx.data of %d bytes", files, st.Size())
	}
	in, err := onnx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Save to another directory and name: every tensor's bytes must survive.
	out := filepath.Join(t.TempDir(), "copy.onnx")
	m2, _ := onnx.Open(path)
	if err := onnx.Save(m2, out); err != nil {
		t.Fatal(err)
	}
	onnxtest.Check(t, out)
	got, err := onnx.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	gi, wi := got.Graph().GetInitializer(), in.Graph().GetInitializer()
	if len(gi) != len(wi) {
		t.Fatalf("%d initializers after save, want %d", len(gi), len(wi))
	}
	for i := range wi {
		if !bytes.Equal(readAll(t, got, gi[i]), readAll(t, in, wi[i])) {
			t.Fatalf("initializer %s changed", wi[i].GetName())
		}
		if onnx.IsExternal(gi[i]) {
			ref, _ := onnx.ParseExternal(gi[i])
			if ref.Location != "copy.onnx.data" {
				t.Fatalf("location %q, want copy.onnx.data", ref.Location)
			}
		}
	}
	// Same config, same bytes: generation is deterministic.
	path2, err := synth.Generate(t.TempDir(), synth.Config{Layers: 2, Hidden: 64, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path + ".data")
	b, _ := os.ReadFile(path2 + ".data")
	if !bytes.Equal(a, b) {
		t.Fatal("synth output differs between runs with the same seed")
	}
}

func TestSynthSize(t *testing.T) {
	for _, want := range []int64{1 << 20, 8 << 20} {
		path, err := synth.Generate(t.TempDir(), synth.Config{WeightBytes: want, Hidden: 128})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path + ".data")
		// At least the bytes asked for, at most one block (plus alignment) more.
		if block := synth.BlockBytes(128, 4); st.Size() < want || st.Size() > want+block+64<<10 {
			t.Errorf("WeightBytes %d gave %d bytes of data (block %d)", want, st.Size(), block)
		}
	}
}

// tensorModel writes a one-initializer model with the given tensor and
// returns its path.
func tensorModel(t *testing.T, dir string, tp *onnxpb.TensorProto) string {
	t.Helper()
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("g"),
			Initializer: []*onnxpb.TensorProto{tp},
			Node:        []*onnxpb.NodeProto{{OpType: proto.String("Identity"), Input: []string{tp.GetName()}, Output: []string{"y"}}},
			Output: []*onnxpb.ValueInfoProto{{Name: proto.String("y"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
				TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(tp.GetDataType()), Shape: shapeOf(tp.GetDims())}}}}},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func shapeOf(dims []int64) *onnxpb.TensorShapeProto {
	s := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return s
}

func ext(loc, off, length string) *onnxpb.TensorProto {
	kv := []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String(loc)}}
	if off != "" {
		kv = append(kv, &onnxpb.StringStringEntryProto{Key: proto.String("offset"), Value: proto.String(off)})
	}
	if length != "" {
		kv = append(kv, &onnxpb.StringStringEntryProto{Key: proto.String("length"), Value: proto.String(length)})
	}
	return &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Float), Dims: []int64{4, 4},
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(), ExternalData: kv}
}

func TestExternalDataFiles(t *testing.T) {
	tests := []struct {
		name    string
		tensor  *onnxpb.TensorProto
		files   map[string]int // file name -> size to create
		want    []onnx.DataFile
		wantErr string
	}{
		{"ok", ext("w.bin", "64", "64"), map[string]int{"w.bin": 128}, []onnx.DataFile{{Path: "w.bin", MinSize: 128}}, ""},
		{"ok subdir no length", ext("d/w.bin", "", ""), map[string]int{"d/w.bin": 64}, []onnx.DataFile{{Path: "d/w.bin", MinSize: 64}}, ""},
		{"absolute", ext("/etc/passwd", "", "64"), nil, nil, "absolute"},
		{"drive", ext("C:/w.bin", "", "64"), nil, nil, "absolute"},
		{"dotdot", ext("../w.bin", "", "64"), nil, nil, "leaves the model's directory"},
		{"inner dotdot", ext("a/../../w.bin", "", "64"), nil, nil, "not clean"},
		{"backslash", ext(`d\w.bin`, "", "64"), nil, nil, "backslash"},
		{"empty location", ext("", "", "64"), nil, nil, "no location"},
		{"missing file", ext("nope.bin", "", "64"), nil, nil, "no such file"},
		{"short file", ext("w.bin", "32", "64"), map[string]int{"w.bin": 64}, nil, "too short"},
		{"huge offset", ext("w.bin", "9223372036854775807", "64"), map[string]int{"w.bin": 64}, nil, "overflows"},
		{"negative offset", ext("w.bin", "-1", "64"), map[string]int{"w.bin": 64}, nil, "non-negative"},
		{"length mismatch", ext("w.bin", "0", "60"), map[string]int{"w.bin": 64}, nil, "needs 64 bytes"},
		{"huge dims", func() *onnxpb.TensorProto {
			tp := ext("w.bin", "0", "64")
			tp.Dims = []int64{1 << 40, 1 << 40}
			return tp
		}(), map[string]int{"w.bin": 64}, nil, "overflows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, size := range tc.files {
				p := filepath.Join(dir, filepath.FromSlash(name))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			files, err := onnx.ExternalDataFiles(tensorModel(t, dir, tc.tensor))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tc.want) || files[0] != tc.want[0] {
				t.Fatalf("files = %+v, want %+v", files, tc.want)
			}
		})
	}
}

func TestSymlinkOutsideRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, make([]byte, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "w.bin")); err != nil {
		t.Fatal(err)
	}
	_, err := onnx.ExternalDataFiles(tensorModel(t, dir, ext("w.bin", "0", "64")))
	if err == nil || !strings.Contains(err.Error(), "outside the model's directory") {
		t.Fatalf("err = %v, want a refusal of the symlink", err)
	}
}

func TestEmbeddedRawDataStaysOnDisk(t *testing.T) {
	raw := make([]byte, 128<<10)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	tp := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Uint8), Dims: []int64{int64(len(raw))}, RawData: raw}
	path := tensorModel(t, t.TempDir(), tp)
	m, err := onnx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	init := m.Graph().GetInitializer()[0]
	if init.RawData != nil {
		t.Fatal("128 KiB raw_data was read into memory")
	}
	if sp, ok := m.Embedded[init]; !ok || sp.Length != int64(len(raw)) {
		t.Fatalf("Embedded = %+v, want a %d-byte span", m.Embedded, len(raw))
	}
	if !bytes.Equal(readAll(t, m, init), raw) {
		t.Fatal("embedded bytes differ")
	}
	// Small raw_data stays inline.
	small := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Uint8), Dims: []int64{3}, RawData: []byte{1, 2, 3}}
	m, err = onnx.Open(tensorModel(t, t.TempDir(), small))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Graph().GetInitializer()[0].RawData; !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Fatalf("raw_data = %v", got)
	}
	// Saving moves the large tensor to external data, bytes unchanged.
	out := filepath.Join(t.TempDir(), "o.onnx")
	m, _ = onnx.Open(path)
	if err := onnx.Save(m, out); err != nil {
		t.Fatal(err)
	}
	onnxtest.Check(t, out)
	m2, err := onnx.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if !onnx.IsExternal(m2.Graph().GetInitializer()[0]) || !bytes.Equal(readAll(t, m2, m2.Graph().GetInitializer()[0]), raw) {
		t.Fatal("saved tensor is not the same external bytes")
	}
}

func TestHostileModels(t *testing.T) {
	raw := make([]byte, 100<<10)
	tp := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Uint8), Dims: []int64{int64(len(raw))}, RawData: raw}
	good, err := os.ReadFile(tensorModel(t, t.TempDir(), tp))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "no graph"},
		{"truncated in raw_data", good[:len(good)/2], "past the end"},
		{"truncated varint", []byte{0x3a, 0xff}, "truncated varint"},
		{"huge graph length", []byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f}, "past the end"},
		{"overlong varint", []byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "longer than 10 bytes"},
		{"field zero", []byte{0x00}, "invalid field number"},
		{"group wire type", []byte{0x0b}, "unsupported wire type"},
		{"two graphs", []byte{0x3a, 0x00, 0x3a, 0x00}, "more than one graph"},
		{"raw_data size mismatch", func() []byte {
			tp := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Float), Dims: []int64{1 << 30}, RawData: raw}
			b, _ := os.ReadFile(tensorModel(t, t.TempDir(), tp))
			return b
		}(), "needs 4294967296"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "m.onnx")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := onnx.Open(p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// MaxInMemory bounds what a graph may hold outside raw_data.
	p := filepath.Join(t.TempDir(), "m.onnx")
	big := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnx.Float), Dims: []int64{1 << 16}, FloatData: make([]float32, 1<<16)}
	b, _ := os.ReadFile(tensorModel(t, t.TempDir(), big))
	os.WriteFile(p, b, 0o644)
	_, err = onnx.OpenWith(p, onnx.Options{LazyThreshold: 1024, MaxInMemory: 64 << 10})
	var fe *onnx.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "outside raw_data") {
		t.Fatalf("err = %v, want a FormatError about the in-memory bound", err)
	}
}

func TestFloat16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {1e10, 0x7c00},
		{6.103515625e-05, 0x0400}, {5.960464477539063e-08, 0x0001}, {2.9e-08, 0x0000},
		{0.333333343, 0x3555}, {1.0009765625, 0x3c01}, {1.00048828125, 0x3c00}, // tie to even
	}
	for _, tc := range tests {
		if got := onnx.Float32ToFloat16(tc.in); got != tc.want {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

// A model whose tensors live in several data files (one in a subdirectory,
// one inside a subgraph) lists them all, and Save gathers them into one.
func TestSeveralDataFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	// 4 KiB each: over the inline threshold, so Save keeps them external.
	a := bytes.Repeat([]byte{1}, 4096)
	b := append(bytes.Repeat([]byte{2}, 4096), bytes.Repeat([]byte{3}, 4096)...)
	if err := os.WriteFile(filepath.Join(dir, "a.bin"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "b.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ta := ext("a.bin", "0", "4096")
	tb := ext("d/b.bin", "4096", "4096")
	ta.Dims, tb.Dims = []int64{32, 32}, []int64{32, 32}
	tb.Name = proto.String("wb")
	path := tensorModel(t, dir, ta)
	// Put tb inside an If's branch, reached only through a node attribute.
	m, err := onnx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	branch := &onnxpb.GraphProto{Name: proto.String("b"), Initializer: []*onnxpb.TensorProto{tb},
		Output: []*onnxpb.ValueInfoProto{{Name: proto.String("wb")}}}
	m.Graph().Node = append(m.Graph().Node, &onnxpb.NodeProto{OpType: proto.String("If"), Input: []string{"c"}, Output: []string{"z"},
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch}}})
	enc, _ := proto.Marshal(m.Proto)
	os.WriteFile(path, enc, 0o644)

	files, err := onnx.ExternalDataFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []onnx.DataFile{{Path: "a.bin", MinSize: 4096}, {Path: "d/b.bin", MinSize: 8192}}
	if len(files) != 2 || files[0] != want[0] || files[1] != want[1] {
		t.Fatalf("files = %+v, want %+v", files, want)
	}
	m, _ = onnx.Open(path)
	out := filepath.Join(t.TempDir(), "one.onnx")
	if err := onnx.Save(m, out); err != nil {
		t.Fatal(err)
	}
	files, err = onnx.ExternalDataFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != "one.onnx.data" {
		t.Fatalf("after Save: %+v, want everything in one.onnx.data", files)
	}
	got, _ := onnx.Open(out)
	var seen [][]byte
	onnx.WalkTensors(got.Proto, func(tp *onnxpb.TensorProto) error {
		seen = append(seen, readAll(t, got, tp))
		return nil
	})
	if len(seen) != 2 || !bytes.Equal(seen[0], a) || !bytes.Equal(seen[1], b[4096:]) {
		t.Fatalf("tensor bytes after Save differ")
	}
}
