// Package onnx reads and writes ONNX models whose weights live in external
// data files (or, for small models, inside the .onnx itself) without ever
// holding the weights in memory: a Model keeps the graph, and each large
// tensor is a reference to a byte range on disk that callers stream.
package onnx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Field numbers of onnx.proto that the lazy parser handles itself.
const (
	modelGraphField       = 7  // ModelProto.graph
	graphInitializerField = 5  // GraphProto.initializer
	graphInputField       = 11 // GraphProto.input
	graphOutputField      = 12 // GraphProto.output
	tensorRawDataField    = 9  // TensorProto.raw_data
)

// Options bound what parsing may hold in memory.
type Options struct {
	// LazyThreshold: raw_data embedded in the .onnx at least this long is not
	// read; the tensor keeps a reference to its bytes in the file instead.
	LazyThreshold int64
	// MaxInMemory bounds the bytes of the graph (everything but lazy
	// raw_data) held in memory; a file over it is refused.
	MaxInMemory int64
	// MaxValueInfo, when positive, bounds each declared input or output of
	// the main graph: a reader that wants only the signature of a model
	// refuses one that claims more.
	MaxValueInfo int64
}

// DefaultOptions suit graphs of any size whose weights are external or
// embedded as raw_data.
var DefaultOptions = Options{LazyThreshold: 64 << 10, MaxInMemory: 256 << 20}

// Span is a byte range of a file.
type Span struct {
	File   string // absolute path
	Offset int64
	Length int64
}

// Model is a parsed model. Proto holds the whole graph except the raw_data
// of top-level initializers that stayed on disk (Embedded).
type Model struct {
	Path  string // absolute path of the .onnx
	Dir   string // directory external data locations are relative to
	Proto *onnxpb.ModelProto
	// Embedded maps top-level initializers whose raw_data is in the .onnx
	// but was not read to where it is.
	Embedded map[*onnxpb.TensorProto]Span

	dataMu    sync.Mutex
	dataFiles map[string]dataFileCheck // checkDataFile's answers
}

// Graph returns the main graph, never nil after a successful parse.
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.GetGraph() }

// FormatError is a malformed or unsupported model file.
type FormatError struct {
	Path   string
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("onnx model %s: at byte %d: %s", e.Path, e.Offset, e.Msg)
}

// Open parses the model at path with DefaultOptions.
func Open(path string) (*Model, error) { return OpenWith(path, DefaultOptions) }

// OpenWith parses the model at path, validating every external data
// reference and every lazy raw_data range of the main graph's initializers.
func OpenWith(path string, opts Options) (*Model, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open onnx model %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("open onnx model: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open onnx model: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open onnx model %s: not a regular file", abs)
	}
	m, err := parse(f, st.Size(), abs, opts)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Parse parses a model from r (size bytes) without touching any other file;
// path names it in errors and anchors Embedded spans. It is what the fuzz
// target exercises.
func Parse(r io.ReaderAt, size int64, path string, opts Options) (*Model, error) {
	return parse(r, size, path, opts)
}

func parse(r io.ReaderAt, size int64, path string, opts Options) (*Model, error) {
	r = newBlockReader(r, size)
	p := &parser{
		path: path, opts: opts,
		r: newPosReader(r, 0, size),
	}
	m := &Model{Path: path, Dir: filepath.Dir(path), Embedded: map[*onnxpb.TensorProto]Span{}}
	var shell []byte
	var graph *onnxpb.GraphProto
	for !p.r.eof() {
		start := p.r.pos
		num, typ, err := p.tag()
		if err != nil {
			return nil, err
		}
		if num == modelGraphField && typ == protowire.BytesType {
			if graph != nil {
				return nil, p.errf(start, "more than one graph field")
			}
			n, err := p.length()
			if err != nil {
				return nil, err
			}
			graph, err = p.graph(p.r.pos+n, m)
			if err != nil {
				return nil, err
			}
			continue
		}
		if shell, err = p.copyField(shell, start, typ); err != nil {
			return nil, err
		}
	}
	m.Proto = &onnxpb.ModelProto{}
	if err := proto.Unmarshal(shell, m.Proto); err != nil {
		return nil, p.errf(0, "decode model fields: %v", err)
	}
	if graph == nil {
		return nil, p.errf(size, "no graph")
	}
	m.Proto.Graph = graph
	return m, nil
}

// parser walks the protobuf wire format by hand for the two levels that may
// hold large tensors (ModelProto.graph.initializer) and hands every other
// field, copied, to the generated decoder.
type parser struct {
	path     string
	opts     Options
	r        *posReader
	inMemory int64
}

func (p *parser) errf(off int64, format string, args ...any) error {
	return &FormatError{Path: p.path, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) varint() (uint64, error) {
	start := p.r.pos
	var v uint64
	for i := 0; i < 10; i++ {
		b, err := p.r.readByte()
		if err != nil {
			return 0, p.errf(start, "truncated varint: %v", err)
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, p.errf(start, "varint longer than 10 bytes")
}

func (p *parser) tag() (protowire.Number, protowire.Type, error) {
	start := p.r.pos
	v, err := p.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
		return 0, 0, p.errf(start, "invalid field number %d", num)
	}
	return num, typ, nil
}

// length reads a length prefix and checks it against the bytes left.
func (p *parser) length() (int64, error) {
	start := p.r.pos
	v, err := p.varint()
	if err != nil {
		return 0, err
	}
	if v > uint64(p.r.limit-p.r.pos) {
		return 0, p.errf(start, "length %d runs past the end of its message (%d bytes left)", v, p.r.limit-p.r.pos)
	}
	return int64(v), nil
}

// copyField appends the whole field starting at start (its tag already
// read) to dst, counting it against MaxInMemory.
func (p *parser) copyField(dst []byte, start int64, typ protowire.Type) ([]byte, error) {
	var n int64
	switch typ {
	case protowire.VarintType:
		if _, err := p.varint(); err != nil {
			return nil, err
		}
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		l, err := p.length()
		if err != nil {
			return nil, err
		}
		n = l
	default:
		// Groups are not used by onnx.proto.
		return nil, p.errf(start, "unsupported wire type %d", typ)
	}
	if p.r.pos+n > p.r.limit {
		return nil, p.errf(start, "field runs past the end of its message")
	}
	end := p.r.pos + n
	total := end - start
	p.inMemory += total
	if p.inMemory > p.opts.MaxInMemory {
		return nil, p.errf(start, "graph holds more than %d bytes outside raw_data; store weights as raw_data or external data", p.opts.MaxInMemory)
	}
	buf := make([]byte, total)
	if _, err := p.r.r.ReadAt(buf, start); err != nil {
		return nil, p.errf(start, "read field: %v", err)
	}
	if err := p.r.seek(end); err != nil {
		return nil, p.errf(start, "%v", err)
	}
	return append(dst, buf...), nil
}

func (p *parser) graph(end int64, m *Model) (*onnxpb.GraphProto, error) {
	outer := p.r.limit
	p.r.limit = end
	var shell []byte
	var inits []*onnxpb.TensorProto
	for p.r.pos < end {
		start := p.r.pos
		num, typ, err := p.tag()
		if err != nil {
			return nil, err
		}
		if num == graphInitializerField && typ == protowire.BytesType {
			n, err := p.length()
			if err != nil {
				return nil, err
			}
			t, err := p.tensor(p.r.pos+n, m)
			if err != nil {
				return nil, err
			}
			inits = append(inits, t)
			continue
		}
		if (num == graphInputField || num == graphOutputField) && typ == protowire.BytesType && p.opts.MaxValueInfo > 0 {
			n, err := p.length()
			if err != nil {
				return nil, err
			}
			if n > p.opts.MaxValueInfo {
				return nil, p.errf(start, "graph input/output is %d bytes, more than the %d allowed", n, p.opts.MaxValueInfo)
			}
			if err := p.r.seek(start); err != nil {
				return nil, p.errf(start, "%v", err)
			}
			if _, _, err := p.tag(); err != nil {
				return nil, err
			}
		}
		if shell, err = p.copyField(shell, start, typ); err != nil {
			return nil, err
		}
	}
	p.r.limit = outer
	g := &onnxpb.GraphProto{}
	if err := proto.Unmarshal(shell, g); err != nil {
		return nil, p.errf(end, "decode graph: %v", err)
	}
	g.Initializer = inits
	return g, nil
}

func (p *parser) tensor(end int64, m *Model) (*onnxpb.TensorProto, error) {
	outer := p.r.limit
	p.r.limit = end
	tensorStart := p.r.pos
	var shell []byte
	var lazy *Span
	for p.r.pos < end {
		start := p.r.pos
		num, typ, err := p.tag()
		if err != nil {
			return nil, err
		}
		if num == tensorRawDataField && typ == protowire.BytesType {
			n, err := p.length()
			if err != nil {
				return nil, err
			}
			if n >= p.opts.LazyThreshold {
				// Protobuf lets a later raw_data replace an earlier one.
				lazy = &Span{File: p.path, Offset: p.r.pos, Length: n}
				shell = dropField(shell, tensorRawDataField)
				if err := p.r.seek(p.r.pos + n); err != nil {
					return nil, p.errf(start, "%v", err)
				}
				continue
			}
			lazy = nil
			// Rewind to copy the whole field, tag included.
			if err := p.r.seek(start); err != nil {
				return nil, p.errf(start, "%v", err)
			}
			if _, _, err := p.tag(); err != nil {
				return nil, err
			}
		}
		if shell, err = p.copyField(shell, start, typ); err != nil {
			return nil, err
		}
	}
	p.r.limit = outer
	t := &onnxpb.TensorProto{}
	if err := proto.Unmarshal(shell, t); err != nil {
		return nil, p.errf(tensorStart, "decode initializer: %v", err)
	}
	if lazy != nil {
		if len(t.RawData) != 0 {
			return nil, p.errf(tensorStart, "initializer %q: raw_data appears twice", t.GetName())
		}
		m.Embedded[t] = *lazy
	}
	return t, nil
}

// dropField removes every occurrence of field num from an encoded message
// that this parser produced (so it is well formed).
func dropField(b []byte, num protowire.Number) []byte {
	out := b[:0:0]
	for len(b) > 0 {
		n, typ, tl := protowire.ConsumeTag(b)
		vl := protowire.ConsumeFieldValue(n, typ, b[tl:])
		if tl < 0 || vl < 0 {
			return append(out, b...)
		}
		if n != num {
			out = append(out, b[:tl+vl]...)
		}
		b = b[tl+vl:]
	}
	return out
}

// posReader reads a file sequentially through a small buffer, knowing its
// position, and seeks without reading what it skips.
type posReader struct {
	r     io.ReaderAt
	br    *bufio.Reader
	pos   int64
	limit int64 // end of the message being parsed
	size  int64
}

func newPosReader(r io.ReaderAt, pos, size int64) *posReader {
	return &posReader{r: r, br: bufio.NewReaderSize(io.NewSectionReader(r, pos, size-pos), 64<<10), pos: pos, limit: size, size: size}
}

func (r *posReader) eof() bool { return r.pos >= r.limit }

func (r *posReader) readByte() (byte, error) {
	if r.pos >= r.limit {
		return 0, io.ErrUnexpectedEOF
	}
	b, err := r.br.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	r.pos++
	return b, nil
}

func (r *posReader) seek(pos int64) error {
	if pos < 0 || pos > r.size {
		return fmt.Errorf("offset %d outside the file (%d bytes)", pos, r.size)
	}
	if d := pos - r.pos; d >= 0 && d <= int64(r.br.Buffered()) {
		_, _ = r.br.Discard(int(d))
	} else {
		r.br.Reset(io.NewSectionReader(r.r, pos, r.size-pos))
	}
	r.pos = pos
	return nil
}
