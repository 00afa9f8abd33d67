package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// End-to-end tests of `modelctl quantize` through the real binary.

// TestQuantizeBoundedMemory runs the binary on a 96 MiB model with 4 MiB chunks:
// its peak RSS (VmHWM, as the process itself reports it: rusage of a child
// includes the parent's RSS at fork) must stay far below the model's size.
func TestQuantizeBoundedMemory(t *testing.T) {
	dir := t.TempDir()
	in, err := synth.Generate(dir, synth.Config{WeightBytes: 96 << 20, Hidden: 512})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Modelctl(t), "quantize", in, "-o", filepath.Join(dir, "q.onnx"), "--json", "--cost-model", "off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum struct {
		PeakRSSBytes int64    `json:"peakRSSBytes"`
		Quantized    []string `json:"Quantized"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("peak RSS %d MiB quantizing 96 MiB", sum.PeakRSSBytes>>20)
	if sum.PeakRSSBytes <= 0 || sum.PeakRSSBytes > 48<<20 {
		t.Errorf("peak RSS %d MiB, want <= 48 MiB", sum.PeakRSSBytes>>20)
	}
	if len(sum.Quantized) != 48 { // 8 blocks of 6
		t.Errorf("quantized %d weights, want 48", len(sum.Quantized))
	}
}

// TestQuantizeCLI: the command's errors are one line and its exit status non-zero;
// a good run prints the summary and writes OUT and OUT.data.
func TestQuantizeCLI(t *testing.T) {
	bin := testenv.Modelctl(t)
	in, err := synth.Generate(t.TempDir(), synth.Config{Layers: 1, Hidden: 64})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"quantize", in}, "-o OUT.onnx is required"},
		{[]string{"quantize", in, "-o", filepath.Join(dir, "x.onnx"), "--mode", "int2"}, "want int8, fp16 or int4"},
		{[]string{"quantize", in, "-o", filepath.Join(dir, "x.onnx"), "--weight-type", "int16"}, "want int8 or uint8"},
		{[]string{"quantize", filepath.Join(dir, "missing.onnx"), "-o", filepath.Join(dir, "x.onnx")}, "no such file"},
		{[]string{"quantize", in, "-o", filepath.Join(dir, "q.onnx"), "--mode", "int4", "--block-size", "64", "--cost-model", "off"}, ""},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if tc.wantErr == "" {
			if err != nil {
				t.Fatalf("%v: %v\n%s", tc.args, err, stderr.String())
			}
			for _, want := range []string{"tensors quantized: 6", "model size:", "peak RSS:"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, stdout.String())
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("progress or noise on a non-terminal stderr: %q", stderr.String())
			}
			onnxtest.Check(t, filepath.Join(dir, "q.onnx"))
			if _, err := os.Stat(filepath.Join(dir, "q.onnx.data")); err != nil {
				t.Error(err)
			}
			continue
		}
		msg := strings.TrimSpace(stderr.String())
		if err == nil || !strings.Contains(msg, tc.wantErr) || strings.Contains(msg, "\n") {
			t.Errorf("%v: err %v, stderr %q; want one line containing %q", tc.args, err, msg, tc.wantErr)
		}
	}
}
