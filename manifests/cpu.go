package manifests

import (
	"fmt"
	"slices"
	"strings"
)

// AnnotationRequiresCPU says which CPUs compute the model right, as a
// CPU requirement (see ParseCPURequirement). Absent or empty: any CPU.
const AnnotationRequiresCPU = AnnotationPrefix + "requires.cpu"

// RequireVNNI is the requirement of a model with full-range int8 weights:
// onnxruntime's u8×s8 kernels are exact only with VNNI on x86-64 (or on
// ARM, which sums in 32 bits); without it pairs of products saturate in
// 16 bits.
const RequireVNNI = "amd64+avx512vnni|amd64+avxvnni|arm64"

// CPU is a processor as a requirement sees it: GOARCH and the feature
// names modelctl reports (bench's cpu_features: avx2, avx512vnni,
// avxvnni, dotprod, ...).
type CPU struct {
	Arch     string   `json:"arch"`
	Features []string `json:"features"`
}

// String is "amd64 (avx, avx2, ...)".
func (c CPU) String() string {
	if len(c.Features) == 0 {
		return c.Arch + " (no listed features)"
	}
	return c.Arch + " (" + strings.Join(c.Features, ", ") + ")"
}

// CPUAlternative is one acceptable CPU: an architecture and the features
// it must have.
type CPUAlternative struct {
	Arch     string
	Features []string
}

// ParseCPURequirement parses "ARCH[+FEATURE...]|ARCH[+FEATURE...]|...":
// a CPU satisfies it when it matches any alternative. "" is no
// requirement (nil).
func ParseCPURequirement(s string) ([]CPUAlternative, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxAnnotationValue {
		return nil, fmt.Errorf("cpu requirement is %d bytes, over %d", len(s), MaxAnnotationValue)
	}
	var alts []CPUAlternative
	for _, alt := range strings.Split(s, "|") {
		parts := strings.Split(strings.TrimSpace(alt), "+")
		for _, p := range parts {
			if !validFeature(p) {
				return nil, fmt.Errorf("cpu requirement %q: %q is not an architecture or feature name", s, p)
			}
		}
		alts = append(alts, CPUAlternative{Arch: parts[0], Features: parts[1:]})
	}
	return alts, nil
}

func validFeature(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// CheckCPU reports whether cpu satisfies the requirement req; the error
// says what is missing.
func CheckCPU(req string, cpu CPU) error {
	alts, err := ParseCPURequirement(req)
	if err != nil {
		return err
	}
	if len(alts) == 0 {
		return nil
	}
	for _, a := range alts {
		if a.Arch != cpu.Arch {
			continue
		}
		ok := true
		for _, f := range a.Features {
			ok = ok && slices.Contains(cpu.Features, f)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("the model needs %s; this CPU is %s", DescribeCPURequirement(req), cpu)
}

// DescribeCPURequirement puts a requirement in words: "amd64 with
// avx512vnni, or amd64 with avxvnni, or arm64".
func DescribeCPURequirement(req string) string {
	alts, err := ParseCPURequirement(req)
	if err != nil || len(alts) == 0 {
		return req
	}
	var words []string
	for _, a := range alts {
		w := a.Arch
		if len(a.Features) > 0 {
			w += " with " + strings.Join(a.Features, " and ")
		}
		words = append(words, w)
	}
	return strings.Join(words, ", or ")
}
