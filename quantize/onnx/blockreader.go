package onnx

import (
	"io"
	"sync"
)

// blockReader serves the parser's many small reads (one per field of a
// graph with thousands of nodes) from one block read ahead, instead of a
// pread each: a 2 MB graph of 8,000 nodes was 77,000 preads. Reads of a
// block or more go straight through, so embedded weights are not copied
// twice.
type blockReader struct {
	r    io.ReaderAt
	size int64

	mu    sync.Mutex
	block []byte
	off   int64 // file offset of block[0]
}

const readBlock = 1 << 20

func newBlockReader(r io.ReaderAt, size int64) *blockReader {
	return &blockReader{r: r, size: size}
}

func (b *blockReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= readBlock || off < 0 || off >= b.size {
		return b.r.ReadAt(p, off)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < b.off || off+int64(len(p)) > b.off+int64(len(b.block)) {
		if b.block == nil {
			b.block = make([]byte, readBlock)
		}
		n, err := b.r.ReadAt(b.block[:cap(b.block)][:min(readBlock, b.size-off)], off)
		b.block, b.off = b.block[:n], off
		if n < len(p) {
			copy(p, b.block)
			if err == nil {
				err = io.EOF
			}
			return n, err
		}
	}
	return copy(p, b.block[off-b.off:]), nil
}
