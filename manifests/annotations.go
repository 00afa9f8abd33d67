package manifests

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AnnotationPrefix is the one prefix of every annotation modelctl defines.
const AnnotationPrefix = "dev.modelctl."

// Manifest annotation keys.
const (
	// AnnotationCreatedAt is when the artifact was pushed (RFC 3339, UTC).
	AnnotationCreatedAt = AnnotationPrefix + "created"
	// AnnotationParentDigest is the manifest digest of the artifact this one
	// was derived from (the FP32 model a quantized model came from).
	AnnotationParentDigest = AnnotationPrefix + "parent.digest"
	// AnnotationParentRef is the reference the parent was resolved from.
	AnnotationParentRef = AnnotationPrefix + "parent.ref"
	// AnnotationQuantizationMethod and the keys under
	// AnnotationQuantizationPrefix record the quantization settings.
	AnnotationQuantizationMethod = AnnotationPrefix + "quantization.method"
	AnnotationQuantizationPrefix = AnnotationPrefix + "quantization."
	// AnnotationBenchPrefix prefixes the flattened benchmark report.
	AnnotationBenchPrefix = AnnotationPrefix + "bench."
	// AnnotationGatesOverridden is "true" on a model pushed with
	// --allow-failed-gates although its bench report failed its gates.
	AnnotationGatesOverridden = AnnotationPrefix + "gates.overridden"
)

// maxBenchAnnotations bounds how many keys a bench report may add.
const maxBenchAnnotations = 256

// BenchAnnotations flattens a benchmark report (the JSON of `modelctl bench
// --json`, decoded into a map) into manifest annotations: nested objects
// join their keys with ".", numbers keep their shortest exact decimal form,
// arrays of scalars become comma-separated lists, and every key lands under
// AnnotationBenchPrefix. It takes a plain map rather than the bench package's
// type so that this package stays free of cgo; the mapping therefore follows
// whatever fields the report has.
func BenchAnnotations(report map[string]any) (map[string]string, error) {
	out := map[string]string{}
	if err := flatten(out, AnnotationBenchPrefix, report, 0); err != nil {
		return nil, err
	}
	if len(out) > maxBenchAnnotations {
		return nil, fmt.Errorf("bench report: %d fields, more than the %d a manifest carries", len(out), maxBenchAnnotations)
	}
	return out, nil
}

// DecodeBenchReport decodes a `bench --json` report and flattens it.
func DecodeBenchReport(data []byte) (map[string]string, error) {
	var report map[string]any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&report); err != nil {
		return nil, fmt.Errorf("bench report: not a JSON object: %w", err)
	}
	// The reference tensors travel as a file of their own (MODEL.check.json).
	delete(report, "reference")
	return BenchAnnotations(report)
}

func flatten(out map[string]string, prefix string, v map[string]any, depth int) error {
	if depth > 8 {
		return fmt.Errorf("bench report: nested deeper than 8 levels at %s", prefix)
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" {
			return fmt.Errorf("bench report: empty key under %s", prefix)
		}
		// Keys can be file or output names; whitespace is not welcome in
		// annotation keys, so it becomes "_".
		key := prefix + strings.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f {
				return '_'
			}
			return r
		}, k)
		switch x := v[k].(type) {
		case map[string]any:
			if err := flatten(out, key+".", x, depth+1); err != nil {
				return err
			}
		case []any:
			parts := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := scalar(e)
				if !ok {
					return fmt.Errorf("bench report: %s: only lists of numbers, strings and booleans are kept", key)
				}
				parts = append(parts, s)
			}
			if err := put(out, key, strings.Join(parts, ",")); err != nil {
				return err
			}
		case nil:
			// An absent measurement is not an annotation.
		default:
			s, ok := scalar(x)
			if !ok {
				return fmt.Errorf("bench report: %s: unsupported value %T", key, x)
			}
			if err := put(out, key, s); err != nil {
				return err
			}
		}
	}
	return nil
}

func put(out map[string]string, key, value string) error {
	if len(value) > MaxAnnotationValue {
		return fmt.Errorf("bench report: %s is %d bytes, over the %d-byte annotation limit", key, len(value), MaxAnnotationValue)
	}
	out[key] = value
	return nil
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", false
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// Benchmark returns the benchmark annotations of a manifest with the prefix
// removed (e.g. "latency_ms.p50" -> "12.3").
func Benchmark(annotations map[string]string) map[string]string {
	return underPrefix(annotations, AnnotationBenchPrefix)
}

// underPrefix returns the annotations under prefix, with it removed.
func underPrefix(annotations map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			out[rest] = v
		}
	}
	return out
}

// Provenance is where an artifact came from.
type Provenance struct {
	ParentRef    string
	ParentDigest string
	Quantization *Quantization
}

// Annotations returns the provenance as manifest annotations.
func (p Provenance) Annotations() map[string]string {
	out := map[string]string{}
	if p.ParentDigest != "" {
		out[AnnotationParentDigest] = p.ParentDigest
	}
	if p.ParentRef != "" {
		out[AnnotationParentRef] = p.ParentRef
	}
	if q := p.Quantization; q != nil && q.Method != "" {
		out[AnnotationQuantizationMethod] = q.Method
		for k, v := range q.Parameters {
			out[AnnotationQuantizationPrefix+k] = v
		}
	}
	return out
}

// CreatedAnnotations records t as the creation time, both under our prefix
// and as the standard OCI key that oras and registries' UIs show.
func CreatedAnnotations(t time.Time) map[string]string {
	s := t.UTC().Format(time.RFC3339)
	return map[string]string{AnnotationCreatedAt: s, AnnotationCreated: s}
}

// QuantizationAnnotations returns the quantization annotations of a
// manifest with the prefix removed ("method", "weight_range", ...).
func QuantizationAnnotations(annotations map[string]string) map[string]string {
	return underPrefix(annotations, AnnotationQuantizationPrefix)
}
