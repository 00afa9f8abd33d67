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
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/synth"
)

// TestCLIStaticAndSearch: the flags of int8-static and --target-cosine
// reach the library; bad combinations are one-line errors that say what
// to give instead.
func TestCLIStaticAndSearch(t *testing.T) {
	bin := testenv.Modelctl(t)
	in, err := synth.Generate(t.TempDir(), synth.Config{Layers: 1, Hidden: 128})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := func(n string) string { return filepath.Join(dir, n) }
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--mode", "int8-static"}, "bind it with --shape input=1xNx128"},
		{[]string{"--max-mse", "0.1"}, "--max-mse and --max-mae go with --target-cosine"},
		{[]string{"--cost-model", "fast"}, `cost model "fast": want "cpu" or "off"`},
		{[]string{"--mode", "int8-static", "--shape", "input=1x8x128", "--calibration", "entropy"}, "want minmax or percentile"},
		{[]string{"--mode", "int8-static", "--inputs", out("nowhere")}, "no such file"},
		{[]string{"--target-cosine", "0.99", "--shape", "input=1x8x128", "--prefer", "cheap"}, `--prefer "cheap"`},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, append([]string{"quantize", in, "-o", out("x.onnx")}, tc.args...)...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		msg := strings.TrimSpace(stderr.String())
		if err == nil || !strings.Contains(msg, tc.wantErr) || strings.Contains(msg, "\n") {
			t.Errorf("%v: err %v, stderr %q; want one line containing %q", tc.args, err, msg, tc.wantErr)
		}
		if _, err := os.Stat(out("x.onnx")); !os.IsNotExist(err) {
			t.Errorf("%v: left x.onnx behind", tc.args)
		}
	}

	run := func(args ...string) map[string]any {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"quantize", in, "--json", "--threads", "1", "--shape", "input=1x8x128", "--samples", "2"}, args...)...)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%v: %v: %s", args, err, b)
		}
		return v
	}
	v := run("-o", out("static.onnx"), "--mode", "int8-static", "--calibration", "percentile", "--percentile", "99.9")
	if v["calibrated"] != float64(4) {
		t.Errorf("static: calibrated %v, want 4", v["calibrated"])
	}
	md := quantize.ReadMetadata(openONNX(t, out("static.onnx")).Proto)
	if md[manifests.AnnotationQuantizationPrefix+"calibration"] != "percentile 99.9" {
		t.Errorf("static metadata %v", md)
	}
	v = run("-o", out("auto.onnx"), "--target-cosine", "0.99", "--max-mae", "0.5", "--prefer", "size")
	s, _ := v["search"].(map[string]any)
	if s == nil || s["chosen"] == "" || s["prefer"] != "size" || len(s["candidates"].([]any)) != 6 {
		t.Fatalf("search: %v", v["search"])
	}
	md = quantize.ReadMetadata(openONNX(t, out("auto.onnx")).Proto)
	if md[manifests.AnnotationQuantizationPrefix+"auto.target"] != "cosine >= 0.99, MAE <= 0.5" || md[manifests.AnnotationQuantizationPrefix+"auto.why"] != s["why"] {
		t.Errorf("auto metadata %v", md)
	}
}

func openONNX(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
