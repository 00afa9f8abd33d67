package onnx

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// countingReaderAt counts the reads that reach the file.
type countingReaderAt struct {
	io.ReaderAt
	reads int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.ReaderAt.ReadAt(p, off)
}

func TestBlockReaderMatchesTheFile(t *testing.T) {
	data := make([]byte, 3*readBlock+777)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	file := &countingReaderAt{ReaderAt: bytes.NewReader(data)}
	br := newBlockReader(file, int64(len(data)))
	// Small reads in order, as the parser makes them, cost a read per block.
	for off := 0; off < len(data); off += 100 {
		p := make([]byte, min(100, len(data)-off))
		if n, err := br.ReadAt(p, int64(off)); n != len(p) || err != nil || !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
	}
	if file.reads > 8 {
		t.Errorf("%d reads reached the file for 4 blocks read in order", file.reads)
	}
	// Anywhere, any size, including past the end.
	for range 2000 {
		off := rng.Int64N(int64(len(data)) + 10)
		p := make([]byte, rng.IntN(2*readBlock))
		if rng.IntN(2) == 0 {
			p = make([]byte, rng.IntN(300))
		}
		n, err := br.ReadAt(p, off)
		want := 0
		if off < int64(len(data)) {
			want = min(len(p), len(data)-int(off))
		}
		if n != want || !bytes.Equal(p[:n], data[min(off, int64(len(data))):][:n]) {
			t.Fatalf("ReadAt(%d, %d bytes): %d, %v; want %d bytes", off, len(p), n, err, want)
		}
		if (n < len(p)) != (err != nil) {
			t.Fatalf("ReadAt(%d, %d bytes): %d bytes with error %v", off, len(p), n, err)
		}
	}
}
