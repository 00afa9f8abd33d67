package modelfile

import (
	"fmt"
	"strconv"

	"github.com/modelctl/modelctl/manifests"
)

// Line is one fact as inspect shows it.
type Line struct {
	Label string
	Value string
}

// described is the order and labels of the facts inspect shows.
var described = []struct{ key, label string }{
	{manifests.AnnotationFormat, "format"},
	{manifests.AnnotationWeightsFormat, "weights format"},
	{manifests.AnnotationName, "name"},
	{manifests.AnnotationArchitecture, "architecture"},
	{manifests.AnnotationParameters, "parameters"},
	{manifests.AnnotationContextLength, "context length"},
	{manifests.AnnotationGGUFVersion, "gguf version"},
	{manifests.AnnotationGGUFFileType, "quantization"},
	{manifests.AnnotationGGUFTensors, "tensors"},
	{manifests.AnnotationGGUFTensorTypes, "tensor types"},
	{manifests.AnnotationSafetensorsShards, "shards"},
	{manifests.AnnotationSafetensorsTensors, "tensors"},
	{manifests.AnnotationSafetensorsDTypes, "dtypes"},
	{manifests.AnnotationFiles, "files"},
	{manifests.AnnotationEntry, "entry"},
}

// Describe returns the format facts among a manifest's annotations (or a
// Model's, from m.Annotations()) in a fixed order with labels for people:
// "parameters" reads "8030261248 (8.03B)". Values are cleaned of control
// characters, since they come from a file's header.
func Describe(annotations map[string]string) []Line {
	var out []Line
	for _, d := range described {
		v, ok := annotations[d.key]
		if !ok {
			continue
		}
		v = cleanValue(v)
		if d.key == manifests.AnnotationParameters {
			if h := humanCount(v); h != v {
				v = fmt.Sprintf("%s (%s)", v, h)
			}
		}
		out = append(out, Line{d.label, v})
	}
	return out
}

// humanCount writes a decimal count the way model sizes are named: 7.24B,
// 137M, 12.5K. A value that is not a count is returned as it is.
func humanCount(s string) string {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return s
	}
	x := float64(n)
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}} {
		if v := x / u.div; v >= 1 {
			prec := 2
			if v >= 100 {
				prec = 0
			} else if v >= 10 {
				prec = 1
			}
			return strconv.FormatFloat(v, 'f', prec, 64) + u.suffix
		}
	}
	return s
}
