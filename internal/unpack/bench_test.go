package unpack

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// weights returns n bytes of FP32 values drawn like trained weights
// (normal, small): gzip shrinks them to about 92%, as it does real models.
func weights(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n&^3)
	for i := 0; i < len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(r.NormFloat64()*0.02)))
	}
	return b
}

// BenchmarkGunzip compares the standard library's inflate with
// klauspost/compress's, which Unpack uses, on model weights:
//
//	go test -run '^$' -bench Gunzip ./internal/unpack
func BenchmarkGunzip(b *testing.B) {
	raw := weights(32 << 20)
	var buf bytes.Buffer
	w := stdgzip.NewWriter(&buf)
	w.Write(raw)
	w.Close()
	gz := buf.Bytes()
	out := make([]byte, 1<<20)
	for _, impl := range []struct {
		name string
		open func(io.Reader) (io.Reader, error)
	}{
		{"stdlib", func(r io.Reader) (io.Reader, error) { return stdgzip.NewReader(r) }},
		{"klauspost", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				zr, err := impl.open(bytes.NewReader(gz))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, zr, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
