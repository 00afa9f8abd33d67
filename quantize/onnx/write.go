package onnx

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// InlineThreshold: tensors smaller than this stay in the .onnx as raw_data,
// as onnx's own external-data converter does (size_threshold=1024).
const InlineThreshold = 1024

// maxProtoSize is protobuf's hard limit on one message: a .onnx over it
// cannot be read by any ONNX implementation.
const maxProtoSize = 2<<30 - 1

// Writer writes a model and its external data file (named after the model:
// x.onnx -> x.onnx.data). Both are written to temporary files and appear at
// their final paths only on Commit, complete and synced.
type Writer struct {
	path     string
	dataName string
	data     *os.File
	bw       *bufio.Writer
	off      int64
	dataUsed bool
	done     bool
}

// Create starts writing the model at path.
func Create(path string) (*Writer, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("create onnx model %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".data.tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create onnx model: %w", err)
	}
	return &Writer{path: abs, dataName: filepath.Base(abs) + ".data", data: f, bw: bufio.NewWriterSize(f, 1<<20)}, nil
}

// DataName is the location written into external references.
func (w *Writer) DataName() string { return w.dataName }

// Path is where the model will be.
func (w *Writer) Path() string { return w.path }

// DataBytes is how many bytes the external data file holds so far.
func (w *Writer) DataBytes() int64 { return w.off }

// Tensor stores size bytes of t's data, produced by fill, inline when small
// and in the data file otherwise, and points t at them. fill must write
// exactly size bytes.
func (w *Writer) Tensor(t *onnxpb.TensorProto, size int64, fill func(io.Writer) error) error {
	want, err := ByteSize(t)
	if err != nil {
		return err
	}
	if want != size {
		return fmt.Errorf("write tensor %q: %d bytes for %s%v, want %d", t.GetName(), size, onnxpb.TensorProto_DataType(t.GetDataType()), t.GetDims(), want)
	}
	clearData(t)
	if size < InlineThreshold {
		var b bytes.Buffer
		if err := fill(&b); err != nil {
			return fmt.Errorf("write tensor %q: %w", t.GetName(), err)
		}
		if int64(b.Len()) != size {
			return fmt.Errorf("write tensor %q: wrote %d bytes, want %d", t.GetName(), b.Len(), size)
		}
		t.RawData = b.Bytes()
		return nil
	}
	// Aligned offsets let onnxruntime map large tensors straight from the file.
	align := int64(64)
	if size >= 1<<20 {
		align = 4096
	}
	if pad := (align - w.off%align) % align; pad > 0 {
		if _, err := w.bw.Write(make([]byte, pad)); err != nil {
			return fmt.Errorf("write %s: %w", w.dataName, err)
		}
		w.off += pad
	}
	cw := &countingWriter{w: w.bw}
	if err := fill(cw); err != nil {
		return fmt.Errorf("write tensor %q: %w", t.GetName(), err)
	}
	if cw.n != size {
		return fmt.Errorf("write tensor %q: wrote %d bytes, want %d", t.GetName(), cw.n, size)
	}
	t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	t.ExternalData = []*onnxpb.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String(w.dataName)},
		{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(w.off, 10))},
		{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(size, 10))},
	}
	start := w.off
	w.off += size
	w.dataUsed = true
	if size >= 8<<20 {
		if err := w.bw.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", w.dataName, err)
		}
		atomicfile.StartWriteback(w.data, start, size)
	}
	return nil
}

// CopyTensor stores src's bytes, unchanged, as t's data.
func (w *Writer) CopyTensor(t *onnxpb.TensorProto, src *Data) error {
	return w.Tensor(t, src.Size, func(dst io.Writer) error {
		_, err := io.Copy(dst, io.NewSectionReader(src, 0, src.Size))
		return err
	})
}

func clearData(t *onnxpb.TensorProto) {
	t.RawData, t.FloatData, t.Int32Data, t.Int64Data = nil, nil, nil, nil
	t.DoubleData, t.Uint64Data, t.StringData = nil, nil, nil
	t.ExternalData, t.DataLocation = nil, nil
}

// Commit writes the model (whose tensors must all have been stored through
// w or hold their own small data) and moves both files into place.
func (w *Writer) Commit(m *onnxpb.ModelProto) error {
	if w.done {
		return fmt.Errorf("write %s: already committed or aborted", w.path)
	}
	defer w.Abort()
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", w.dataName, err)
	}
	if err := w.data.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", w.dataName, err)
	}
	if err := w.data.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", w.dataName, err)
	}
	// Closed before it is renamed: Windows refuses to rename an open file
	// ("Sharing violation"). Abort removes it by name from here on.
	if err := w.data.Close(); err != nil {
		return fmt.Errorf("write %s: %w", w.dataName, err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode model %s: %w", w.path, err)
	}
	if len(b) > maxProtoSize {
		return fmt.Errorf("encode model %s: graph is %d bytes, over protobuf's 2 GiB limit", w.path, len(b))
	}
	mf, err := os.CreateTemp(filepath.Dir(w.path), "."+filepath.Base(w.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	defer os.Remove(mf.Name())
	if _, err := mf.Write(b); err != nil {
		mf.Close()
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if err := mf.Chmod(0o644); err != nil {
		mf.Close()
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if err := mf.Sync(); err != nil {
		mf.Close()
		return fmt.Errorf("sync %s: %w", w.path, err)
	}
	if err := mf.Close(); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	// Data first: the model appears only once everything it references is there.
	if w.dataUsed {
		if err := atomicfile.Rename(w.data.Name(), filepath.Join(filepath.Dir(w.path), w.dataName)); err != nil {
			return fmt.Errorf("write model: %w", err)
		}
	}
	if err := atomicfile.Rename(mf.Name(), w.path); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(w.path)); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}

// Abort removes what was written; after Commit it does nothing.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.data.Close()
	os.Remove(w.data.Name())
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Save writes m to path: external and lazily embedded data are streamed,
// unchanged, into path's data file; small in-memory data stays inline.
func Save(m *Model, path string) error {
	w, err := Create(path)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.Relocate(m, nil); err != nil {
		return err
	}
	return w.Commit(m.Proto)
}

// Relocate copies, byte for byte, the data of every tensor of m that lives
// on disk (external or lazily embedded) into w, skipping tensors for which
// skip returns true (those the caller rewrites itself).
func (w *Writer) Relocate(m *Model, skip func(*onnxpb.TensorProto) bool) error {
	return WalkTensors(m.Proto, func(t *onnxpb.TensorProto) error {
		if skip != nil && skip(t) {
			return nil
		}
		_, lazy := m.Embedded[t]
		if !lazy && !IsExternal(t) {
			return nil
		}
		d, err := m.TensorData(t)
		if err != nil {
			return err
		}
		defer d.Close()
		if err := w.CopyTensor(t, d); err != nil {
			return err
		}
		delete(m.Embedded, t)
		return nil
	})
}
