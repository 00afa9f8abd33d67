package modelfile_test

import (
	"strings"
	"testing"

	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// quantize and bench refuse other formats by name instead of failing in
// the ONNX parser ("at byte 3: unsupported wire type 4").
func TestRequireONNX(t *testing.T) {
	dir := t.TempDir()
	graph, err := synth.Generate(dir, synth.Config{WeightBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := modelfile.RequireONNX("quantize", graph); err != nil {
		t.Errorf("an ONNX graph: %v", err)
	}
	gg := modelfiletest.GGUF(t, t.TempDir(), "m.gguf")
	err = modelfile.RequireONNX("bench", gg)
	if err == nil || !strings.Contains(err.Error(), "gguf model") || !strings.Contains(err.Error(), "ONNX models only") {
		t.Errorf("a GGUF file: %v", err)
	}
	if err := modelfile.RequireONNX("bench", t.TempDir()); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("a directory: %v", err)
	}
}
