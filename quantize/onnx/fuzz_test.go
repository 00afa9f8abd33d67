package onnx_test

import (
	"bytes"
	"testing"

	"github.com/modelctl/modelctl/quantize/onnx"
)

// FuzzParseModel feeds arbitrary bytes to the parser: it must return a
// model or an error, never panic, hang or allocate by a declared size.
// The corpus (testdata/fuzz/FuzzParseModel) holds small real encodings.
func FuzzParseModel(f *testing.F) {
	f.Add([]byte{0x3a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := onnx.Parse(bytes.NewReader(b), int64(len(b)), "/fuzz/m.onnx", onnx.Options{LazyThreshold: 16, MaxInMemory: 1 << 20})
		if err == nil && m.Graph() == nil {
			t.Fatal("nil graph without an error")
		}
		if err == nil {
			// Validation must not panic either (files are absent: errors are fine).
			_ = m.Validate()
		}
	})
}
