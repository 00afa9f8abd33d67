package model

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// newClient is a client that never reaches a registry in these tests:
// every push below is refused before the network is touched (the address
// is one nothing listens on, so a push that went on would fail loudly).
func newClient(t *testing.T) (*client.Client, client.Reference) {
	t.Helper()
	c, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: credentials.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := client.ParseReference("127.0.0.1:1/team/m:v1")
	if err != nil {
		t.Fatal(err)
	}
	return c, ref
}

func writeReport(t *testing.T, dir string, rep map[string]any) string {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "report.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The rules of a push hold before any byte is sent.
func TestPushRefusesBeforeSending(t *testing.T) {
	c, ref := newClient(t)
	dir := t.TempDir()
	graph, err := synth.Generate(dir, synth.Config{WeightBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	failed := writeReport(t, t.TempDir(), map[string]any{
		"model": map[string]any{"path": graph},
		"gates": map[string]any{"passed": false, "failures": []string{"out: cosine 0.71 < 0.98"}},
	})
	noGates := writeReport(t, t.TempDir(), map[string]any{"model": map[string]any{"path": graph}})
	gg := modelfiletest.GGUF(t, t.TempDir(), "m.gguf")
	data := filepath.Join(dir, "model.onnx.data")
	for _, tc := range []struct {
		name string
		path string
		opts PushOptions
		want string
		is   error
	}{
		{"failed gates", graph, PushOptions{Bench: failed}, "failed its quality gates", ErrGatesFailed},
		{"no gates", graph, PushOptions{Bench: noGates}, "has no gates", nil},
		{"bench of a GGUF", gg, PushOptions{Bench: failed}, "ONNX models only", nil},
		{"unknown format", data, PushOptions{}, "raw", nil},
		{"bad format flag", graph, PushOptions{Format: "pickle"}, "--format", nil},
		{"quant-param without method", graph, PushOptions{QuantParams: []string{"a=1"}}, "needs --quantization", nil},
		{"bad quant-param", graph, PushOptions{Quantization: "dynamic", QuantParams: []string{"a"}}, "KEY=VALUE", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Push(context.Background(), c, tc.path, ref, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.is)
			}
			if strings.Contains(err.Error(), "127.0.0.1:1") {
				t.Fatalf("the push reached for the registry: %v", err)
			}
		})
	}
}

func TestQuantization(t *testing.T) {
	md := map[string]string{
		manifests.AnnotationQuantizationMethod:               "dynamic",
		manifests.AnnotationQuantizationPrefix + "precision": "int8",
		manifests.AnnotationQuantizationPrefix + "range":     "portable",
	}
	for _, tc := range []struct {
		name      string
		md        map[string]string
		opts      PushOptions
		method    string
		params    map[string]string
		precision string
	}{
		{"from the model", md, PushOptions{}, "dynamic", map[string]string{"precision": "int8", "range": "portable"}, "int8"},
		{"flags win", md, PushOptions{Quantization: "static", QuantParams: []string{"calibration=minmax"}, Precision: "int8"}, "static", map[string]string{"calibration": "minmax"}, "int8"},
		{"none", map[string]string{}, PushOptions{Precision: "fp32"}, "", nil, "fp32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quant, precision, err := quantization(tc.md, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if precision != tc.precision {
				t.Errorf("precision %q, want %q", precision, tc.precision)
			}
			if tc.method == "" {
				if quant != nil {
					t.Errorf("quantization %+v, want none", quant)
				}
				return
			}
			if quant == nil || quant.Method != tc.method || !reflect.DeepEqual(quant.Parameters, tc.params) {
				t.Errorf("quantization %+v, want %s %v", quant, tc.method, tc.params)
			}
		})
	}
}

// A pulled graph whose external data the artifact lacks is reported.
func TestCheckExternalData(t *testing.T) {
	dir := t.TempDir()
	if _, err := synth.Generate(dir, synth.Config{WeightBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	files := []client.FileResult{{Path: "model.onnx"}, {Path: "model.onnx.data"}}
	if w := CheckExternalData(dir, files); len(w) != 0 {
		t.Fatalf("warnings for a whole model: %v", w)
	}
	data := filepath.Join(dir, "model.onnx.data")
	if err := os.Truncate(data, 10); err != nil {
		t.Fatal(err)
	}
	if w := CheckExternalData(dir, files); len(w) != 1 || !strings.Contains(w[0], "will not load") {
		t.Fatalf("a short data file: %v", w)
	}
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if w := CheckExternalData(dir, files[:1]); len(w) != 1 || !strings.Contains(w[0], "will not load") {
		t.Fatalf("a missing data file: %v", w)
	}
}

// Reports saved by Windows shells (UTF-16 with a BOM, UTF-8 with a BOM)
// read as the JSON they hold.
func TestDecodeReportText(t *testing.T) {
	want := `{"gates":{"passed":true}}`
	utf16le := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(want)) {
		utf16le = append(utf16le, byte(u), byte(u>>8))
	}
	for name, in := range map[string][]byte{
		"plain":    []byte(want),
		"utf8 bom": append([]byte{0xef, 0xbb, 0xbf}, want...),
		"utf16le":  utf16le,
	} {
		if got := string(DecodeReportText(in)); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
