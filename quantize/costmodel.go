package quantize

import (
	"fmt"

	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// CostModel names the rule that keeps nodes in float where the integer
// kernel does not pay.
type CostModel string

const (
	// CostModelCPU keeps in float the MatMul/Gemm nodes whose weight is too
	// small for onnxruntime's CPU integer kernels to win back what they add
	// (see pays).
	CostModelCPU CostModel = "cpu"
	// CostModelOff quantizes every candidate node.
	CostModelOff CostModel = "off"
)

// MinProfitableKN is the smallest weight (K×N elements) whose int8 (or
// int4) node is faster than FP32 in onnxruntime's CPU provider.
//
// A dynamically quantized MatMul pays a fixed cost per call (quantizing A:
// a pass over M×K for its range and one to quantize it, then a rescale of
// M×N) and wins on the K×N×M multiply-adds. For a small weight the fixed
// cost dominates whatever M is: measured (docs/quantize.md) on hello_deepa,
// whose Gemms are 2400×32, 32×32 and 32×1 at M = 1, int8 of all three is
// 0.6× FP32; below this threshold a node stays in float.
const MinProfitableKN = 16 * 1024

// DefaultAccuracyLevel is MatMulNBits' accuracy_level unless the options
// say otherwise: 4 (int8 activations) lets onnxruntime use its integer
// kernels for the 4-bit weights, measured faster than float activations
// (docs/quantize.md).
const DefaultAccuracyLevel = 4

// pays applies the cost model to a candidate node whose weight has dims.
func (o *Options) pays(n *onnxpb.NodeProto, dims []int64) (bool, string) {
	if o.CostModel == CostModelOff || o.Mode == ModeFP16 {
		return true, ""
	}
	if kn := dims[0] * dims[1]; kn < MinProfitableKN {
		return false, fmt.Sprintf("int8 does not pay on CPU: weight %d×%d (%d elements) is under the cost model's %d", dims[0], dims[1], kn, MinProfitableKN)
	}
	return true, ""
}
