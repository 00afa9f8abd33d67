package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Dim is one dimension of a declared input or output: a fixed size, or a
// symbolic name (dim_param) or nothing when it is dynamic (Value < 0).
type Dim struct {
	Value int64  `json:"value"`
	Param string `json:"param,omitempty"`
}

func (d Dim) String() string {
	switch {
	case d.Value >= 0:
		return fmt.Sprint(d.Value)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// ValueInfo is a declared graph input or output. Shape is nil when the model
// declares no shape (any rank).
type ValueInfo struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []Dim  `json:"shape"`
	// NotTensor is set for sequence, map and optional values, which the
	// benchmark cannot feed.
	NotTensor bool `json:"-"`
}

// ModelInfo is what the benchmark needs to know about a model without loading
// its weights: the graph's declared inputs (initializers excluded) and
// outputs, in declared order, and the external data files its initializers
// name.
type ModelInfo struct {
	Inputs  []ValueInfo
	Outputs []ValueInfo
	// ExternalData lists the distinct external data locations, as written
	// in the model (relative to its directory), sorted.
	ExternalData []string
	// Mode is the quantization mode the model's metadata records
	// (dev.modelctl.quantization.mode), "" for none.
	Mode string
}

// maxValueInfoBytes bounds one declared input or output: a model's
// signature is small, and a file that claims otherwise is refused.
const maxValueInfoBytes = 1 << 20

// ReadModelInfo reads an ONNX model file's declared inputs and outputs and
// external data locations with quantize/onnx, the one ONNX reader: weights
// (external or embedded raw_data) stay on disk, so it is cheap on
// multi-gigabyte models.
func ReadModelInfo(path string) (*ModelInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read model %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read model %s: %w", path, err)
	}
	opts := onnx.DefaultOptions
	opts.MaxValueInfo = maxValueInfoBytes
	m, err := onnx.Parse(f, st.Size(), path, opts)
	if err != nil {
		var fe *onnx.FormatError
		if errors.As(err, &fe) && fe.Msg == "no graph" {
			return nil, fmt.Errorf("read model %s: not an ONNX model: no graph", path)
		}
		return nil, fmt.Errorf("read model %s: not a valid ONNX model: %w", path, err)
	}
	return modelInfo(m)
}

// ReadModelInfoBytes is ReadModelInfo for a model held in memory; name
// labels it in errors.
func ReadModelInfoBytes(name string, model []byte) (*ModelInfo, error) {
	opts := onnx.DefaultOptions
	opts.MaxValueInfo = maxValueInfoBytes
	m, err := onnx.Parse(bytes.NewReader(model), int64(len(model)), name, opts)
	if err != nil {
		return nil, fmt.Errorf("read model %s: not a valid ONNX model: %w", name, err)
	}
	return modelInfo(m)
}

// modelInfo extracts what the benchmark needs from a parsed model.
func modelInfo(m *onnx.Model) (*ModelInfo, error) {
	g := m.Graph()
	info := &ModelInfo{}
	for _, p := range m.Proto.GetMetadataProps() {
		if p.GetKey() == manifests.AnnotationQuantizationPrefix+"mode" {
			info.Mode = p.GetValue()
		}
	}
	initializers := map[string]bool{}
	for _, t := range g.GetInitializer() {
		initializers[t.GetName()] = true
	}
	// Before IR 4 every initializer was also listed as an input; those are
	// weights with defaults, not inputs a caller must feed.
	for _, in := range g.GetInput() {
		if !initializers[in.GetName()] {
			info.Inputs = append(info.Inputs, toValueInfo(in))
		}
	}
	for _, out := range g.GetOutput() {
		info.Outputs = append(info.Outputs, toValueInfo(out))
	}
	external := map[string]bool{}
	err := onnx.WalkTensors(m.Proto, func(t *onnxpb.TensorProto) error {
		if !onnx.IsExternal(t) {
			return nil
		}
		ref, err := onnx.ParseExternal(t)
		if err != nil {
			return fmt.Errorf("read model %s: %w", m.Path, err)
		}
		external[ref.Location] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	for loc := range external {
		info.ExternalData = append(info.ExternalData, loc)
	}
	sort.Strings(info.ExternalData)
	return info, nil
}

// toValueInfo converts a declared input or output: a tensor type has an
// element type and maybe a shape of dims, each dim_value or dim_param;
// anything else (sequence, map, sparse, optional, or no type) is NotTensor.
func toValueInfo(v *onnxpb.ValueInfoProto) ValueInfo {
	vi := ValueInfo{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		vi.NotTensor = true
		return vi
	}
	if tt.ElemType != nil {
		x := tt.GetElemType()
		vi.DType = onnxTypes[int64(x)]
		if vi.DType == "" {
			vi.DType = fmt.Sprintf("onnx-type-%d", x)
		}
	}
	if tt.Shape == nil {
		return vi
	}
	vi.Shape = []Dim{}
	for _, d := range tt.GetShape().GetDim() {
		dim := Dim{Value: -1, Param: d.GetDimParam()}
		if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
			dim.Value = d.GetDimValue()
		}
		vi.Shape = append(vi.Shape, dim)
	}
	return vi
}

// ModelBytes is the size of the model file plus its external data files.
func ModelBytes(modelPath string) (int64, error) {
	info, err := ReadModelInfo(modelPath)
	if err != nil {
		return 0, err
	}
	files, err := ModelFiles(modelPath, info)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		n += f.Bytes
	}
	return n, nil
}

// ModelFiles returns the model file and its external data files with their
// sizes, refusing a location that leaves the model's directory.
func ModelFiles(modelPath string, info *ModelInfo) ([]FileSize, error) {
	st, err := os.Stat(modelPath)
	if err != nil {
		return nil, fmt.Errorf("model files: %w", err)
	}
	files := []FileSize{{Path: filepath.Base(modelPath), Bytes: st.Size()}}
	dir := filepath.Dir(modelPath)
	for _, loc := range info.ExternalData {
		clean := filepath.Clean(filepath.FromSlash(loc))
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("model files: %s: external data location %q is outside the model's directory", modelPath, loc)
		}
		st, err := os.Stat(filepath.Join(dir, clean))
		if err != nil {
			return nil, fmt.Errorf("model files: %s: external data: %w", modelPath, err)
		}
		files = append(files, FileSize{Path: filepath.ToSlash(clean), Bytes: st.Size()})
	}
	return files, nil
}

// FileSize is one file of a model.
type FileSize struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}
