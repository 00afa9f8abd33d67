package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// .npy files (NumPy's format, versions 1 to 3) carry inputs (--input) and
// move tensors between the benchmark's processes. Only little-endian,
// C-ordered numeric arrays are read; the header is checked against the
// file's real size before anything is allocated.

const maxNPYHeader = 64 << 10

var npyDescr = map[string]string{
	"<f4": Float32, "<f8": Float64, "<f2": Float16, "|i1": Int8, "|u1": Uint8, "<i2": Int16,
	"<u2": Uint16, "<i4": Int32, "<u4": Uint32, "<i8": Int64, "<u8": Uint64, "|b1": Bool,
}

func npyDescrOf(dtype string) (string, bool) {
	if dtype == BFloat16 {
		return "<u2", true // NumPy has no bfloat16: the raw bits, as uint16
	}
	for d, t := range npyDescr {
		if t == dtype {
			return d, true
		}
	}
	return "", false
}

var (
	npyDescrRe   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	npyFortranRe = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	npyShapeRe   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// ReadNPY reads a .npy file into a Tensor named name.
func ReadNPY(path, name string) (Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return Tensor{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Tensor{}, fmt.Errorf("read %s: %w", path, err)
	}
	t, err := readNPY(bufio.NewReader(f), st.Size(), name)
	if err != nil {
		return Tensor{}, fmt.Errorf("read %s: %w", path, err)
	}
	return t, nil
}

func readNPY(r io.Reader, size int64, name string) (Tensor, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return Tensor{}, fmt.Errorf("not a .npy file: %w", unexpected(err))
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return Tensor{}, fmt.Errorf("not a .npy file: bad magic")
	}
	var hlen int64
	used := int64(8)
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Tensor{}, unexpected(err)
		}
		hlen, used = int64(binary.LittleEndian.Uint16(b[:])), used+2
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Tensor{}, unexpected(err)
		}
		hlen, used = int64(binary.LittleEndian.Uint32(b[:])), used+4
	default:
		return Tensor{}, fmt.Errorf(".npy version %d.%d is not supported", pre[6], pre[7])
	}
	if hlen > maxNPYHeader || used+hlen > size {
		return Tensor{}, fmt.Errorf(".npy header length %d does not fit the file (%d bytes)", hlen, size)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return Tensor{}, unexpected(err)
	}
	used += hlen
	h := string(hdr)
	m := npyDescrRe.FindStringSubmatch(h)
	if m == nil {
		return Tensor{}, fmt.Errorf(".npy header has no descr: %q", h)
	}
	descr := m[1]
	switch descr {
	case "<i1", "=i1", "<u1", "=u1", "<b1", "=b1":
		descr = "|" + descr[1:]
	}
	if strings.HasPrefix(descr, "=") {
		descr = "<" + descr[1:] // native order; this package only runs little-endian
	}
	dtype, ok := npyDescr[descr]
	if !ok {
		return Tensor{}, fmt.Errorf(".npy dtype %q is not supported (want little-endian float/int/uint/bool)", m[1])
	}
	if m := npyFortranRe.FindStringSubmatch(h); m == nil || m[1] != "False" {
		return Tensor{}, fmt.Errorf(".npy array is Fortran-ordered or says nothing; save it C-ordered (np.ascontiguousarray)")
	}
	m = npyShapeRe.FindStringSubmatch(h)
	if m == nil {
		return Tensor{}, fmt.Errorf(".npy header has no shape: %q", h)
	}
	shape := []int64{}
	for _, part := range strings.Split(m[1], ",") {
		part = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), "L"))
		if part == "" {
			continue
		}
		d, err := strconv.ParseInt(part, 10, 64)
		if err != nil || d < 0 {
			return Tensor{}, fmt.Errorf(".npy shape %q: bad dimension %q", m[1], part)
		}
		shape = append(shape, d)
	}
	n, err := NumElements(shape)
	if err != nil {
		return Tensor{}, fmt.Errorf(".npy: %w", err)
	}
	isz := int64(dtypeSize[dtype])
	if n > (size-used)/isz || n*isz != size-used {
		return Tensor{}, fmt.Errorf(".npy shape %v of %s needs %d data bytes, the file has %d", shape, dtype, n*isz, size-used)
	}
	t := Tensor{Name: name, DType: dtype, Shape: shape}
	raw := make([]byte, n*isz)
	if _, err := io.ReadFull(r, raw); err != nil {
		return Tensor{}, unexpected(err)
	}
	le := binary.LittleEndian
	switch dtype {
	case Float32:
		d := make([]float32, n)
		for i := range d {
			d[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		t.Data = d
	case Float64:
		d := make([]float64, n)
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		t.Data = d
	case Float16, Uint16:
		d := make([]uint16, n)
		for i := range d {
			d[i] = le.Uint16(raw[2*i:])
		}
		t.Data = d
	case Int16:
		d := make([]int16, n)
		for i := range d {
			d[i] = int16(le.Uint16(raw[2*i:]))
		}
		t.Data = d
	case Int8:
		d := make([]int8, n)
		for i := range d {
			d[i] = int8(raw[i])
		}
		t.Data = d
	case Uint8:
		t.Data = raw
	case Bool:
		d := make([]bool, n)
		for i := range d {
			d[i] = raw[i] != 0
		}
		t.Data = d
	case Int32:
		d := make([]int32, n)
		for i := range d {
			d[i] = int32(le.Uint32(raw[4*i:]))
		}
		t.Data = d
	case Uint32:
		d := make([]uint32, n)
		for i := range d {
			d[i] = le.Uint32(raw[4*i:])
		}
		t.Data = d
	case Int64:
		d := make([]int64, n)
		for i := range d {
			d[i] = int64(le.Uint64(raw[8*i:]))
		}
		t.Data = d
	case Uint64:
		d := make([]uint64, n)
		for i := range d {
			d[i] = le.Uint64(raw[8*i:])
		}
		t.Data = d
	}
	return t, nil
}

// WriteNPY writes a tensor as a version 1 .npy file, atomically (temporary
// file, fsync, rename). bfloat16, which NumPy lacks, is written as its
// raw bits (uint16).
func WriteNPY(path string, t Tensor) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	descr, ok := npyDescrOf(t.DType)
	if !ok {
		return fmt.Errorf("write %s: dtype %s has no .npy equivalent", path, t.DType)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 64<<10)
	if err := encodeNPY(w, descr, t); err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func encodeNPY(w io.Writer, descr string, t Tensor) error {
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	shape := strings.Join(dims, ", ")
	if len(dims) == 1 {
		shape += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape)
	// Pad so the data starts on a 64-byte boundary, ending in a newline.
	pad := 64 - (10+len(h)+1)%64
	if pad == 64 {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	var pre bytes.Buffer
	pre.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(&pre, binary.LittleEndian, uint16(len(h)))
	pre.WriteString(h)
	if _, err := w.Write(pre.Bytes()); err != nil {
		return err
	}
	var buf [8]byte
	le := binary.LittleEndian
	var err error
	put := func(b []byte) {
		if err == nil {
			_, err = w.Write(b)
		}
	}
	switch d := t.Data.(type) {
	case []float32:
		for _, v := range d {
			le.PutUint32(buf[:], math.Float32bits(v))
			put(buf[:4])
		}
	case []float64:
		for _, v := range d {
			le.PutUint64(buf[:], math.Float64bits(v))
			put(buf[:8])
		}
	case []uint16:
		for _, v := range d {
			le.PutUint16(buf[:], v)
			put(buf[:2])
		}
	case []int16:
		for _, v := range d {
			le.PutUint16(buf[:], uint16(v))
			put(buf[:2])
		}
	case []int8:
		for _, v := range d {
			buf[0] = byte(v)
			put(buf[:1])
		}
	case []uint8:
		put(d)
	case []bool:
		for _, v := range d {
			buf[0] = 0
			if v {
				buf[0] = 1
			}
			put(buf[:1])
		}
	case []int32:
		for _, v := range d {
			le.PutUint32(buf[:], uint32(v))
			put(buf[:4])
		}
	case []uint32:
		for _, v := range d {
			le.PutUint32(buf[:], v)
			put(buf[:4])
		}
	case []int64:
		for _, v := range d {
			le.PutUint64(buf[:], uint64(v))
			put(buf[:8])
		}
	case []uint64:
		for _, v := range d {
			le.PutUint64(buf[:], v)
			put(buf[:8])
		}
	}
	return err
}

// unexpected turns a clean EOF in the middle of a file into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
