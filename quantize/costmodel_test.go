package quantize_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/onnx/onnxtest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// TestCostModel: by default, weights under quantize.MinProfitableKN
// elements stay in float (with the reason and in the metadata), larger ones
// are quantized; --cost-model off quantizes all; fp16 ignores it.
func TestCostModel(t *testing.T) {
	deepa := onnxtest.Model(t, onnxtest.HelloDeepa)             // Gemm 2400×32, 32×32, 32×1
	ppocr := onnxtest.Model(t, onnxtest.PPOCRv4)                // 120×120 … 120×6625
	small := synthModel(t, synth.Config{Layers: 1, Hidden: 64}) // 64×64 attention, 64×256 FFN
	for _, tc := range []struct {
		name      string
		model     string
		opts      quantize.Options
		quantized []string
		floats    int // candidates kept in float by the cost model
	}{
		{"hello_deepa int8", deepa, quantize.Options{}, []string{"layer1.weight"}, 2},
		{"hello_deepa int4", deepa, quantize.Options{Mode: quantize.ModeInt4}, []string{"layer1.weight"}, 2},
		{"hello_deepa off", deepa, quantize.Options{CostModel: quantize.CostModelOff}, []string{"layer1.weight", "blocks.0.fcn_layer.weight", "last_layer.weight"}, 0},
		{"synthetic 64", small, quantize.Options{}, []string{"layers.0.ffn.up.weight", "layers.0.ffn.down.weight"}, 4},
		{"PP-OCRv4 int8", ppocr, quantize.Options{}, nil, 2}, // the two 120×120
		{"PP-OCRv4 off", ppocr, quantize.Options{CostModel: quantize.CostModelOff}, nil, 0},
		{"hello_deepa fp16", deepa, quantize.Options{Mode: quantize.ModeFP16}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "q.onnx")
			sum, err := quantize.Quantize(context.Background(), tc.model, out, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.quantized != nil && !slices.Equal(sum.Quantized, tc.quantized) {
				t.Errorf("quantized %v, want %v", sum.Quantized, tc.quantized)
			}
			var kept []string
			for _, s := range sum.Skipped {
				if strings.Contains(s.Reason, "does not pay on CPU") {
					kept = append(kept, s.Node)
				}
			}
			if len(kept) != tc.floats {
				t.Errorf("kept in float by the cost model: %v, want %d", kept, tc.floats)
			}
			md := quantize.ReadMetadata(open(t, out).Proto)
			for _, n := range kept {
				if !strings.Contains(md[manifests.AnnotationQuantizationPrefix+"float_node_names"], n) {
					t.Errorf("metadata float_node_names %q lacks %s", md[manifests.AnnotationQuantizationPrefix+"float_node_names"], n)
				}
			}
			if tc.opts.Mode != quantize.ModeFP16 {
				if got, want := md[manifests.AnnotationQuantizationPrefix+"cost_model"], string(orDefault(tc.opts.CostModel)); got != want {
					t.Errorf("metadata cost_model %q, want %q", got, want)
				}
			}
		})
	}
}

func orDefault(c quantize.CostModel) quantize.CostModel {
	if c == "" {
		return quantize.CostModelCPU
	}
	return c
}

// TestAccuracyLevel: int4 writes accuracy_level 4 by default, the level
// asked for, or none with -1; out-of-range levels are refused.
func TestAccuracyLevel(t *testing.T) {
	in := synthModel(t, synth.Config{Layers: 1, Hidden: 128})
	for _, tc := range []struct {
		level int
		want  int64 // -1: no attribute
		err   string
	}{
		{0, 4, ""}, {1, 1, ""}, {-1, -1, ""}, {5, 0, "accuracy level 5"}, {-2, 0, "accuracy level -2"},
	} {
		out := filepath.Join(t.TempDir(), "q.onnx")
		_, err := quantize.Quantize(context.Background(), in, out, quantize.Options{Mode: quantize.ModeInt4, AccuracyLevel: tc.level})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("level %d: err %v, want %q", tc.level, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, node := range open(t, out).Graph().GetNode() {
			if node.GetOpType() != "MatMulNBits" {
				continue
			}
			n++
			got := int64(-1)
			for _, a := range node.GetAttribute() {
				if a.GetName() == "accuracy_level" {
					got = a.GetI()
				}
			}
			if got != tc.want {
				t.Errorf("level %d: node %s accuracy_level %d, want %d", tc.level, node.GetName(), got, tc.want)
			}
		}
		if n != 6 {
			t.Errorf("level %d: %d MatMulNBits nodes, want 6", tc.level, n)
		}
	}
}
