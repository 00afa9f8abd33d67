package onnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// ExternalRef is a validated TensorProto.external_data reference.
type ExternalRef struct {
	Location string // slash-separated, clean, relative to the model's directory
	Offset   int64
	Length   int64 // -1 when the reference has no length (the rest of the file)
}

// IsExternal reports whether the tensor's data is in an external file.
func IsExternal(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
}

// ParseExternal reads and validates a tensor's external_data entries.
func ParseExternal(t *onnxpb.TensorProto) (ExternalRef, error) {
	ref := ExternalRef{Length: -1}
	seen := map[string]bool{}
	for _, kv := range t.GetExternalData() {
		k, v := kv.GetKey(), kv.GetValue()
		if seen[k] {
			return ref, fmt.Errorf("tensor %q: external_data key %q appears twice", t.GetName(), k)
		}
		seen[k] = true
		switch k {
		case "location":
			ref.Location = v
		case "offset", "length":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return ref, fmt.Errorf("tensor %q: external_data %s %q is not a non-negative integer", t.GetName(), k, v)
			}
			if k == "offset" {
				ref.Offset = n
			} else {
				ref.Length = n
			}
		}
	}
	if err := ValidLocation(ref.Location); err != nil {
		return ref, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if ref.Length >= 0 && ref.Offset > math.MaxInt64-ref.Length {
		return ref, fmt.Errorf("tensor %q: external_data offset %d + length %d overflows", t.GetName(), ref.Offset, ref.Length)
	}
	return ref, nil
}

// ValidLocation accepts only a clean, relative, slash-separated path that
// stays inside the model's directory: an artifact must never make a reader
// open a file elsewhere.
func ValidLocation(loc string) error {
	switch {
	case loc == "":
		return errors.New("external_data has no location")
	case strings.ContainsAny(loc, "\\\x00"):
		return fmt.Errorf("external_data location %q: backslashes and NUL are not allowed; use a relative path with '/'", loc)
	case strings.HasPrefix(loc, "/"), len(loc) >= 2 && loc[1] == ':':
		return fmt.Errorf("external_data location %q is absolute; it must be relative to the model's directory", loc)
	case path.Clean(loc) != loc:
		return fmt.Errorf("external_data location %q is not clean (want %q)", loc, path.Clean(loc))
	}
	for _, el := range strings.Split(loc, "/") {
		if el == ".." || el == "." {
			return fmt.Errorf("external_data location %q leaves the model's directory", loc)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(loc)) {
		return fmt.Errorf("external_data location %q is not a local path", loc)
	}
	return nil
}

// WalkTensors calls fn for every TensorProto in the model: initializers,
// sparse tensors, node attributes, and those of every subgraph, training
// info and function.
func WalkTensors(m *onnxpb.ModelProto, fn func(*onnxpb.TensorProto) error) error {
	w := tensorWalker{fn: fn}
	w.graph(m.GetGraph())
	for _, ti := range m.GetTrainingInfo() {
		w.graph(ti.GetInitialization())
		w.graph(ti.GetAlgorithm())
	}
	for _, f := range m.GetFunctions() {
		w.nodes(f.GetNode())
	}
	return w.err
}

type tensorWalker struct {
	fn  func(*onnxpb.TensorProto) error
	err error
}

func (w *tensorWalker) tensor(t *onnxpb.TensorProto) {
	if t != nil && w.err == nil {
		w.err = w.fn(t)
	}
}

func (w *tensorWalker) sparse(s *onnxpb.SparseTensorProto) {
	w.tensor(s.GetValues())
	w.tensor(s.GetIndices())
}

func (w *tensorWalker) graph(g *onnxpb.GraphProto) {
	if g == nil {
		return
	}
	for _, t := range g.GetInitializer() {
		w.tensor(t)
	}
	for _, s := range g.GetSparseInitializer() {
		w.sparse(s)
	}
	w.nodes(g.GetNode())
}

func (w *tensorWalker) nodes(nodes []*onnxpb.NodeProto) {
	for _, n := range nodes {
		for _, a := range n.GetAttribute() {
			w.tensor(a.GetT())
			for _, t := range a.GetTensors() {
				w.tensor(t)
			}
			w.sparse(a.GetSparseTensor())
			for _, s := range a.GetSparseTensors() {
				w.sparse(s)
			}
			w.graph(a.GetG())
			for _, g := range a.GetGraphs() {
				w.graph(g)
			}
		}
	}
}

// DataFile is one external data file a model references.
type DataFile struct {
	Path    string // relative to the model's directory, slash-separated, clean
	MinSize int64  // largest offset+length referenced
}

// ExternalDataFiles lists the external data files of the model at
// modelPath after validating every reference and checking that each file
// exists inside the model's directory and is long enough.
func ExternalDataFiles(modelPath string) ([]DataFile, error) {
	m, err := Open(modelPath)
	if err != nil {
		return nil, err
	}
	return m.DataFiles()
}

// DataFiles lists the model's external data files (see ExternalDataFiles).
func (m *Model) DataFiles() ([]DataFile, error) {
	sizes := map[string]int64{}
	err := WalkTensors(m.Proto, func(t *onnxpb.TensorProto) error {
		if !IsExternal(t) {
			return nil
		}
		sp, err := m.externalSpan(t)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.Dir, sp.File)
		rel = filepath.ToSlash(rel)
		sizes[rel] = max(sizes[rel], sp.Offset+sp.Length)
		return nil
	})
	if err != nil {
		return nil, err
	}
	files := make([]DataFile, 0, len(sizes))
	for p, n := range sizes {
		files = append(files, DataFile{Path: p, MinSize: n})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// externalSpan resolves and checks an external reference: the file must
// exist inside the model's directory (symlinks included), be a regular
// file, and hold offset+length bytes; the length must match dtype and dims.
func (m *Model) externalSpan(t *onnxpb.TensorProto) (Span, error) {
	ref, err := ParseExternal(t)
	if err != nil {
		return Span{}, fmt.Errorf("model %s: %w", m.Path, err)
	}
	file := filepath.Join(m.Dir, filepath.FromSlash(ref.Location))
	st, err := m.checkDataFile(file, ref.Location)
	if err != nil {
		return Span{}, fmt.Errorf("model %s: tensor %q: %w", m.Path, t.GetName(), err)
	}
	want, err := ByteSize(t)
	if err != nil {
		return Span{}, fmt.Errorf("model %s: %w", m.Path, err)
	}
	length := ref.Length
	if length < 0 {
		length = want
	}
	if length != want {
		return Span{}, fmt.Errorf("model %s: tensor %q: external data length %d, but %s%v needs %d bytes",
			m.Path, t.GetName(), length, onnxpb.TensorProto_DataType(t.GetDataType()), t.GetDims(), want)
	}
	if ref.Offset > st.Size() || length > st.Size()-ref.Offset {
		return Span{}, fmt.Errorf("model %s: tensor %q: external data %s is %d bytes, too short for offset %d + length %d",
			m.Path, t.GetName(), ref.Location, st.Size(), ref.Offset, length)
	}
	return Span{File: file, Offset: ref.Offset, Length: length}, nil
}

// checkDataFile checks an external data file once per model, not once per
// tensor (a graph holds thousands of tensors in one or two files): it must
// be a regular file inside the model's directory, symlinks resolved.
func (m *Model) checkDataFile(file, location string) (os.FileInfo, error) {
	m.dataMu.Lock()
	defer m.dataMu.Unlock()
	if c, ok := m.dataFiles[file]; ok {
		return c.st, c.err
	}
	st, err := checkDataFile(m.Dir, file, location)
	if m.dataFiles == nil {
		m.dataFiles = map[string]dataFileCheck{}
	}
	m.dataFiles[file] = dataFileCheck{st, err}
	return st, err
}

type dataFileCheck struct {
	st  os.FileInfo
	err error
}

func checkDataFile(dir, file, location string) (os.FileInfo, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("external data file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("external data %s is not a regular file", location)
	}
	if real, err := filepath.EvalSymlinks(file); err == nil {
		d, derr := filepath.EvalSymlinks(dir)
		if rel, rerr := filepath.Rel(d, real); derr != nil || rerr != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("external data %s resolves outside the model's directory", location)
		}
	}
	return st, nil
}

// Validate checks every tensor's data against its dtype and dims, and every
// external reference against its file.
func (m *Model) Validate() error {
	if m.Proto.GetGraph() == nil {
		return fmt.Errorf("model %s: no graph", m.Path)
	}
	return WalkTensors(m.Proto, func(t *onnxpb.TensorProto) error {
		if IsExternal(t) {
			if len(t.GetRawData()) != 0 {
				return fmt.Errorf("model %s: tensor %q: both raw_data and external data", m.Path, t.GetName())
			}
			_, err := m.externalSpan(t)
			return err
		}
		var have int64
		if sp, ok := m.Embedded[t]; ok {
			have = sp.Length
		} else if t.RawData != nil {
			have = int64(len(t.RawData))
		} else {
			return nil // typed fields: their count is checked by whoever decodes them
		}
		want, err := ByteSize(t)
		if err != nil {
			return fmt.Errorf("model %s: %w", m.Path, err)
		}
		if have != want {
			return fmt.Errorf("model %s: tensor %q: raw_data is %d bytes, but %s%v needs %d",
				m.Path, t.GetName(), have, onnxpb.TensorProto_DataType(t.GetDataType()), t.GetDims(), want)
		}
		return nil
	})
}

// Data is a tensor's raw little-endian bytes, wherever they are.
type Data struct {
	io.ReaderAt
	Size  int64
	close func() error
	file  *os.File
	off   int64
}

// File returns the open file holding the bytes and their offset in it, for
// callers that map it; ok is false for data held in memory.
func (d *Data) File() (f *os.File, offset int64, ok bool) {
	return d.file, d.off, d.file != nil
}

// Close releases the file behind the data, if any.
func (d *Data) Close() error {
	if d.close != nil {
		return d.close()
	}
	return nil
}

// TensorData opens the bytes of a tensor of m (from its external file, the
// .onnx, raw_data or the typed data fields), checked against dtype and dims.
func (m *Model) TensorData(t *onnxpb.TensorProto) (*Data, error) {
	want, err := ByteSize(t)
	if err != nil {
		return nil, err
	}
	var sp Span
	switch e, ok := m.Embedded[t]; {
	case ok:
		sp = e
	case IsExternal(t):
		if sp, err = m.externalSpan(t); err != nil {
			return nil, err
		}
	default:
		b, err := typedBytes(t, want)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Path, err)
		}
		return &Data{ReaderAt: bytes.NewReader(b), Size: int64(len(b))}, nil
	}
	if sp.Length != want {
		return nil, fmt.Errorf("model %s: tensor %q: %d bytes of data, want %d", m.Path, t.GetName(), sp.Length, want)
	}
	f, err := os.Open(sp.File)
	if err != nil {
		return nil, fmt.Errorf("model %s: tensor %q: %w", m.Path, t.GetName(), err)
	}
	return &Data{ReaderAt: io.NewSectionReader(f, sp.Offset, sp.Length), Size: sp.Length, close: f.Close, file: f, off: sp.Offset}, nil
}

// typedBytes encodes in-memory tensor data as raw little-endian bytes.
func typedBytes(t *onnxpb.TensorProto, want int64) ([]byte, error) {
	if t.RawData != nil {
		if int64(len(t.RawData)) != want {
			return nil, fmt.Errorf("tensor %q: raw_data is %d bytes, want %d", t.GetName(), len(t.RawData), want)
		}
		return t.RawData, nil
	}
	var n int
	var put func(b []byte)
	switch dt := t.GetDataType(); {
	case dt == Float && len(t.FloatData) > 0:
		n = len(t.FloatData) * 4
		put = func(b []byte) {
			for i, v := range t.FloatData {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
		}
	case dt == Int64 && len(t.Int64Data) > 0:
		n = len(t.Int64Data) * 8
		put = func(b []byte) {
			for i, v := range t.Int64Data {
				binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
			}
		}
	case want == 0:
		return nil, nil
	default:
		return nil, fmt.Errorf("tensor %q: %s data in typed fields is not supported here; store it as raw_data",
			t.GetName(), onnxpb.TensorProto_DataType(t.GetDataType()))
	}
	if int64(n) != want {
		return nil, fmt.Errorf("tensor %q: typed data holds %d bytes, want %d", t.GetName(), n, want)
	}
	b := make([]byte, n)
	put(b)
	return b, nil
}

// Prefetch hints that t's data (external or embedded) will be read soon;
// it never fails, and does nothing for in-memory data.
func (m *Model) Prefetch(t *onnxpb.TensorProto) {
	sp, ok := m.Embedded[t]
	if !ok && IsExternal(t) {
		var err error
		if sp, err = m.externalSpan(t); err != nil {
			return
		}
	} else if !ok {
		return
	}
	f, err := os.Open(sp.File)
	if err != nil {
		return
	}
	advise(f, sp.Offset, sp.Length)
	f.Close()
}
