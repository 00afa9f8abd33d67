package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
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
}

// Limits on the parts of a model held in memory while scanning; everything
// else (weights, nodes) is skipped by streaming past it.
const (
	maxValueInfoBytes = 1 << 20
	maxSmallField     = 64 << 10
)

// ReadModelInfo scans an ONNX model file for its declared inputs and outputs
// and external data locations. It streams the file: weights are skipped, not
// read into memory, so it is cheap on multi-gigabyte models.
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
	p := &pbReader{r: bufio.NewReaderSize(f, 64<<10)}
	info := &ModelInfo{}
	var graphs int
	err = p.fields(st.Size(), func(num protowire.Number, typ protowire.Type, n int64) error {
		if num != 7 || typ != protowire.BytesType { // ModelProto.graph
			return p.skip(typ, n)
		}
		graphs++
		return p.graph(n, info)
	})
	if err != nil {
		return nil, fmt.Errorf("read model %s: not a valid ONNX model: %w", path, err)
	}
	if graphs == 0 {
		return nil, fmt.Errorf("read model %s: not an ONNX model: no graph", path)
	}
	return info, nil
}

// pbReader walks protobuf messages field by field from a stream.
type pbReader struct {
	r   *bufio.Reader
	off int64
}

func (p *pbReader) ReadByte() (byte, error) {
	b, err := p.r.ReadByte()
	if err == nil {
		p.off++
	}
	return b, err
}

func (p *pbReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := p.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fields calls fn for each field of a message that ends at offset end; for a
// length-delimited field n is its length (already checked to fit), and fn
// must consume exactly the field's payload (by reading or skipping it).
func (p *pbReader) fields(end int64, fn func(num protowire.Number, typ protowire.Type, n int64) error) error {
	for p.off < end {
		tag, err := p.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num < 1 {
			return fmt.Errorf("invalid field number at offset %d", p.off)
		}
		var n int64
		switch typ {
		case protowire.BytesType:
			l, err := p.varint()
			if err != nil {
				return err
			}
			if l > uint64(end-p.off) {
				return fmt.Errorf("field %d at offset %d: length %d runs past its message", num, p.off, l)
			}
			n = int64(l)
		case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type:
		default:
			return fmt.Errorf("field %d at offset %d: unsupported wire type %d", num, p.off, typ)
		}
		start := p.off
		if err := fn(num, typ, n); err != nil {
			return err
		}
		if typ == protowire.BytesType && p.off != start+n {
			return fmt.Errorf("field %d at offset %d: internal: consumed %d of %d bytes", num, start, p.off-start, n)
		}
	}
	if p.off != end {
		return fmt.Errorf("message overruns its end at offset %d", end)
	}
	return nil
}

// skip consumes a field's payload without keeping it.
func (p *pbReader) skip(typ protowire.Type, n int64) error {
	switch typ {
	case protowire.VarintType:
		_, err := p.varint()
		return err
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	}
	d, err := p.r.Discard(int(n))
	p.off += int64(d)
	return unexpected(err)
}

// bytes reads a length-delimited payload of at most limit bytes.
func (p *pbReader) bytes(n, limit int64, what string) ([]byte, error) {
	if n > limit {
		return nil, fmt.Errorf("%s at offset %d is %d bytes, more than the %d allowed", what, p.off, n, limit)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(p.r, b)
	p.off += n
	return b, unexpected(err)
}

// graph reads a GraphProto of n bytes: inputs (11), outputs (12) and the
// names and external data of initializers (5).
func (p *pbReader) graph(n int64, info *ModelInfo) error {
	var inputs []ValueInfo
	initializers := map[string]bool{}
	external := map[string]bool{}
	err := p.fields(p.off+n, func(num protowire.Number, typ protowire.Type, n int64) error {
		if typ != protowire.BytesType {
			return p.skip(typ, n)
		}
		switch num {
		case 11, 12:
			b, err := p.bytes(n, maxValueInfoBytes, "graph input/output")
			if err != nil {
				return err
			}
			vi, err := parseValueInfo(b)
			if err != nil {
				return err
			}
			if num == 11 {
				inputs = append(inputs, vi)
			} else {
				info.Outputs = append(info.Outputs, vi)
			}
			return nil
		case 5:
			name, loc, err := p.initializer(n)
			if err != nil {
				return err
			}
			initializers[name] = true
			if loc != "" {
				external[loc] = true
			}
			return nil
		}
		return p.skip(typ, n)
	})
	if err != nil {
		return err
	}
	// Before IR 4 every initializer was also listed as an input; those are
	// weights with defaults, not inputs a caller must feed.
	for _, in := range inputs {
		if !initializers[in.Name] {
			info.Inputs = append(info.Inputs, in)
		}
	}
	for loc := range external {
		info.ExternalData = append(info.ExternalData, loc)
	}
	sort.Strings(info.ExternalData)
	return nil
}

// initializer reads a TensorProto's name (8) and external data location
// (13, key "location"), skipping its data.
func (p *pbReader) initializer(n int64) (name, location string, err error) {
	err = p.fields(p.off+n, func(num protowire.Number, typ protowire.Type, n int64) error {
		if typ != protowire.BytesType || (num != 8 && num != 13) {
			return p.skip(typ, n)
		}
		b, err := p.bytes(n, maxSmallField, "initializer field")
		if err != nil {
			return err
		}
		if num == 8 {
			name = string(b)
			return nil
		}
		key, value, err := parseStringEntry(b)
		if err != nil {
			return err
		}
		if key == "location" {
			location = value
		}
		return nil
	})
	return name, location, err
}

// walk iterates over the fields of an in-memory message.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

func parseStringEntry(b []byte) (key, value string, err error) {
	err = walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			key = string(v)
		case num == 2 && typ == protowire.BytesType:
			value = string(v)
		}
		return nil
	})
	return key, value, err
}

// parseValueInfo decodes a ValueInfoProto: name (1) and type (2), where a
// TypeProto's tensor_type (1) has elem_type (1) and shape (2) of dims (1),
// each dim_value (1) or dim_param (2).
func parseValueInfo(b []byte) (ValueInfo, error) {
	var vi ValueInfo
	var typ []byte
	err := walk(b, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && wt == protowire.BytesType:
			vi.Name = string(v)
		case num == 2 && wt == protowire.BytesType:
			typ = v
		}
		return nil
	})
	if err != nil {
		return vi, err
	}
	var tensor []byte
	sawType := false
	err = walk(typ, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
		if wt != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			tensor, sawType = v, true
		case 4, 5, 8, 9: // sequence, map, sparse tensor, optional
			vi.NotTensor, sawType = true, true
		}
		return nil
	})
	if err != nil || !sawType || vi.NotTensor {
		if !sawType {
			vi.NotTensor = true
		}
		return vi, err
	}
	var shape []byte
	hasShape := false
	err = walk(tensor, func(num protowire.Number, wt protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && wt == protowire.VarintType:
			vi.DType = onnxTypes[int64(x)]
			if vi.DType == "" {
				vi.DType = fmt.Sprintf("onnx-type-%d", x)
			}
		case num == 2 && wt == protowire.BytesType:
			shape, hasShape = v, true
		}
		return nil
	})
	if err != nil || !hasShape {
		return vi, err
	}
	vi.Shape = []Dim{}
	err = walk(shape, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
		if num != 1 || wt != protowire.BytesType {
			return nil
		}
		d := Dim{Value: -1}
		err := walk(v, func(num protowire.Number, wt protowire.Type, v []byte, x uint64) error {
			switch {
			case num == 1 && wt == protowire.VarintType:
				d.Value = int64(x)
			case num == 2 && wt == protowire.BytesType:
				d.Param = string(v)
			}
			return nil
		})
		vi.Shape = append(vi.Shape, d)
		return err
	})
	return vi, err
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
