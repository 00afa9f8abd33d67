package quantize

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/modelctl/modelctl/internal/mapped"
)

// matrix is a constant FP32 weight read in chunks from disk (or memory):
// logically [K, N] (B of MatMul: K inputs, N outputs), physically [K, N] or,
// for Gemm with transB=1, [N, K]. Chunks are either logical rows (for
// MatMulInteger's [K, N] layout) or logical columns (for MatMulNBits'
// [N, K] layout), so output can be written in order, in one pass per chunk.
type matrix struct {
	r     io.ReaderAt
	K, N  int64
	trans bool // physical layout is [N, K]

	// file and off locate the weight on disk when it is there, so that
	// contiguous chunks can be mapped instead of read; unmap releases the
	// current mapping.
	file  *os.File
	off   int64
	unmap func()
}

// release unmaps the last chunk, if mapped.
func (m *matrix) release() {
	if m.unmap != nil {
		m.unmap()
		m.unmap = nil
	}
}

// chunkLines is how many lines (rows if byRow, else columns) fit in budget
// bytes of float32, at least one.
func (m *matrix) chunkLines(byRow bool, budget int64) int64 {
	line := m.N
	total := m.K
	if !byRow {
		line, total = m.K, m.N
	}
	return max(1, min(total, budget/(4*line)))
}

// read returns logical lines [i0, i1) as float32: rows of N when byRow,
// columns of K (that is, rows of Bᵀ) otherwise. The result may view
// scratch (contiguous lines) or fill buf (strided); both are grown as
// needed and returned for reuse, and never alias each other.
func (m *matrix) read(byRow bool, i0, i1 int64, buf []float32, scratch []byte) (v, _ []float32, _ []byte, _ error) {
	line, other := m.N, m.K
	if !byRow {
		line, other = m.K, m.N
	}
	n := (i1 - i0) * line
	if contiguous := byRow != m.trans; contiguous {
		// Physical rows i0..i1 are exactly these lines.
		m.release()
		if m.file != nil {
			if b, unmap, ok := mapped.Range(m.file, m.off+4*i0*line, 4*n); ok {
				if v, ok := viewFloats(b); ok {
					m.unmap = unmap
					return v, buf, scratch, nil
				}
				unmap()
			}
		}
		scratch = growBytes(scratch, 4*n)
		if _, err := m.r.ReadAt(scratch[:4*n], 4*i0*line); err != nil {
			return nil, buf, scratch, fmt.Errorf("read weight lines %d..%d: %w", i0, i1, err)
		}
		if v, ok := viewFloats(scratch[:4*n]); ok {
			return v, buf, scratch, nil
		}
		buf = grow(buf, n)
		decode(buf, scratch)
		return buf, buf, scratch, nil
	}
	// Strided: each physical line (length other... i.e. 'line' physical
	// lines of 'other' elements) contributes a segment [i0, i1).
	buf = grow(buf, n)
	seg := i1 - i0
	scratch = growBytes(scratch, 4*seg)
	for p := int64(0); p < line; p++ {
		if _, err := m.r.ReadAt(scratch[:4*seg], 4*(p*other+i0)); err != nil {
			return nil, buf, scratch, fmt.Errorf("read weight column %d: %w", p, err)
		}
		for j := int64(0); j < seg; j++ {
			buf[j*line+p] = math.Float32frombits(binary.LittleEndian.Uint32(scratch[4*j:]))
		}
	}
	return buf, buf, scratch, nil
}

func decode(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func grow(b []float32, n int64) []float32 {
	if int64(cap(b)) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func growBytes(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}
