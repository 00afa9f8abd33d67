package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/synth"
)

// A failed gate names full-range weights as the likely cause on a CPU
// without VNNI, and only there, given the CPU rather than this host's.
func TestGateHint(t *testing.T) {
	fp32, err := synth.Generate(t.TempDir(), synth.Config{Layers: 1, Hidden: 64, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]string{}
	for name, o := range map[string]quantize.Options{"portable": {}, "full": {FullRange: true}} {
		out := filepath.Join(t.TempDir(), "q.onnx")
		if _, err := quantize.Quantize(context.Background(), fp32, out, o); err != nil {
			t.Fatal(err)
		}
		models[name] = out
	}
	avx2 := manifests.CPU{Arch: "amd64", Features: []string{"avx", "avx2", "fma"}}
	vnni := manifests.CPU{Arch: "amd64", Features: []string{"avx2", "avx512vnni"}}
	arm := manifests.CPU{Arch: "arm64", Features: []string{"asimd"}}
	for _, tc := range []struct {
		model string
		cpu   manifests.CPU
		hint  bool
	}{
		{"full", avx2, true}, {"full", vnni, false}, {"full", arm, false},
		{"portable", avx2, false}, {"portable", vnni, false},
	} {
		h := gateHint(context.Background(), models[tc.model], tc.cpu)
		if (h != "") != tc.hint || (tc.hint && (!strings.Contains(h, "no VNNI") || !strings.Contains(h, "without --full-range"))) {
			t.Errorf("%s on %v: hint %q, want one: %v", tc.model, tc.cpu, h, tc.hint)
		}
	}
}
