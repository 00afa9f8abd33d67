package quantize

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Metadata is what a quantized model says about itself, written into its
// metadata_props under the annotation keys push copies into the manifest
// (manifests.AnnotationQuantizationPrefix, manifests.AnnotationRequiresCPU):
// so the settings and the CPU requirement travel with the file, whoever
// pushes it. Nothing here depends on the machine or the time, so the same
// model quantized on Linux and on Windows has the same bytes.
func Metadata(o Options, s *Summary) map[string]string {
	q := manifests.AnnotationQuantizationPrefix
	md := map[string]string{
		manifests.AnnotationQuantizationMethod: Method(o.Mode, o.FP16WeightsOnly),
		q + "mode":                             string(o.Mode),
		q + "precision":                        Precision(o.Mode),
		q + "quantized_weights":                strconv.Itoa(len(s.Quantized)),
		q + "float_nodes":                      strconv.Itoa(len(s.Skipped)),
	}
	if names := skippedNames(s.Skipped); names != "" {
		md[q+"float_node_names"] = names
	}
	if o.Mode != ModeFP16 {
		md[q+"cost_model"] = string(o.CostModel)
	}
	switch o.Mode {
	case ModeInt8, ModeInt8Static:
		wt := "int8"
		if o.Uint8 {
			wt = "uint8"
		}
		md[q+"weight_type"] = wt
		md[q+"weight_range"] = o.Range()
		md[q+"per_channel"] = strconv.FormatBool(o.PerChannel)
		md[q+"activations"] = "uint8 dynamic"
		if o.Mode == ModeInt8Static {
			md[q+"activations"] = "uint8 static"
			md[q+"static_form"] = o.Form
			if o.Calibration != "" {
				md[q+"calibration"] = o.Calibration
			}
		}
		if o.Range() == RangePortable && !o.Uint8 {
			md[q+"narrowed_weights"] = strconv.Itoa(len(s.Narrowed))
		}
		if len(s.NeedsVNNI) > 0 {
			md[q+"vnni_weights"] = strconv.Itoa(len(s.NeedsVNNI))
		}
	case ModeInt4:
		md[q+"block_size"] = strconv.Itoa(o.BlockSize)
		md[q+"symmetric"] = strconv.FormatBool(o.Symmetric)
		if o.AccuracyLevel > 0 {
			md[q+"accuracy_level"] = strconv.Itoa(o.AccuracyLevel)
		}
	case ModeFP16:
		md[q+"weights_only"] = strconv.FormatBool(o.FP16WeightsOnly)
	}
	if s.RequiresCPU != "" {
		md[manifests.AnnotationRequiresCPU] = s.RequiresCPU
	}
	if len(o.NodeModes) > 0 {
		md[q+"int8_nodes"] = strconv.Itoa(len(o.NodeModes))
	}
	for k, v := range o.Notes {
		md[q+k] = truncate(v, manifests.MaxAnnotationValue-64)
	}
	return md
}

// Method is the ModelPack quantization method of a mode.
func Method(m Mode, fp16WeightsOnly bool) string {
	switch m {
	case ModeInt8:
		return "dynamic"
	case ModeInt8Static:
		return "static"
	case ModeInt4:
		return "blockwise-int4"
	case ModeFP16:
		if fp16WeightsOnly {
			return "fp16-weights"
		}
		return "fp16"
	}
	return string(m)
}

// Precision is the ModelPack precision of a mode's output.
func Precision(m Mode) string {
	if m == ModeFP16 {
		return "fp16"
	}
	if m == ModeInt8Static {
		return "int8"
	}
	return string(m)
}

// skippedNames lists the nodes left in float, within one annotation.
func skippedNames(skips []Skip) string {
	names := make([]string, 0, len(skips))
	for _, s := range skips {
		names = append(names, s.Node)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		more := " ... " + strconv.Itoa(len(names)-i) + " more"
		if b.Len()+len(n)+1+len(more) > manifests.MaxAnnotationValue-64 {
			b.WriteString(more)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return b.String()
}

// setMetadata replaces the model's modelctl metadata with md; any other
// metadata passes through as it was.
func setMetadata(m *onnxpb.ModelProto, md map[string]string) {
	var keep []*onnxpb.StringStringEntryProto
	for _, p := range m.GetMetadataProps() {
		if !strings.HasPrefix(p.GetKey(), manifests.AnnotationPrefix) {
			keep = append(keep, p)
		}
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		keep = append(keep, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(md[k])})
	}
	m.MetadataProps = keep
}

// ReadMetadata returns a model's modelctl metadata (nil when it has none).
func ReadMetadata(m *onnxpb.ModelProto) map[string]string {
	var md map[string]string
	for _, p := range m.GetMetadataProps() {
		if strings.HasPrefix(p.GetKey(), manifests.AnnotationPrefix) {
			if md == nil {
				md = map[string]string{}
			}
			md[p.GetKey()] = p.GetValue()
		}
	}
	return md
}

// truncate shortens s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
