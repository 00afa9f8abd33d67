// Package onnxtest gives tests the ONNX reference checker (Debian's
// python3-onnx, installed by mk/onnx.mk) and the real test models.
package onnxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// Python is the interpreter that has python3-onnx: the system one, not a
// pyenv python3 that may come first on PATH.
const Python = "/usr/bin/python3"

const checkScript = `import onnx, sys
onnx.checker.check_model(sys.argv[1], full_check=True)
`

// Check runs onnx.checker.check_model(path, full_check=True) and fails the
// test with the checker's message when it refuses the model. The check
// runs on a copy next to the model (so external data resolves): onnx 1.12's
// full check rewrites the file it is given with inferred shapes.
func Check(t testing.TB, path string) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import onnx").Run(); err != nil {
		t.Fatalf("onnxtest: %s cannot import onnx (%v): run `make tools` (installs python3-onnx)", Python, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".check-*.onnx")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(Python, "-c", checkScript, f.Name()).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx checker refused %s: %v\n%s", path, err, out)
	}
}

// Real models fetched by mk/onnx.mk into .cache/models.
const (
	PPOCRv4    = "ch_PP-OCRv4_rec_infer.onnx" // MatMul + attention, opset 9
	HelloDeepa = "hello_deepa.onnx"           // Gemm
	SileroVAD  = "silero_vad_v5.onnx"         // LSTM, If subgraphs
)

// Model returns the path of a real test model, failing when it is absent.
func Model(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(testenv.Root(t), ".cache", "models", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("onnxtest: model %s is not at %s: run `make tools` (mk/onnx.mk fetches it)", name, p)
	}
	return p
}
