package manifests

import (
	"strings"
	"testing"
)

func TestCheckCPU(t *testing.T) {
	haswell := CPU{Arch: "amd64", Features: []string{"avx", "avx2", "fma"}}
	icelake := CPU{Arch: "amd64", Features: []string{"avx2", "avx512f", "avx512vnni"}}
	alder := CPU{Arch: "amd64", Features: []string{"avx2", "avxvnni"}}
	graviton := CPU{Arch: "arm64", Features: []string{"asimd"}}
	tests := []struct {
		req  string
		cpu  CPU
		ok   bool
		want string
	}{
		{"", haswell, true, ""},
		{RequireVNNI, haswell, false, "the model needs amd64 with avx512vnni, or amd64 with avxvnni, or arm64; this CPU is amd64 (avx, avx2, fma)"},
		{RequireVNNI, icelake, true, ""},
		{RequireVNNI, alder, true, ""},
		{RequireVNNI, graviton, true, ""},
		{"amd64+avx2+fma", haswell, true, ""},
		{"amd64+avx2+avx512f", haswell, false, "amd64 with avx2 and avx512f"},
		{"arm64", haswell, false, "needs arm64"},
		{"amd64+AVX2", haswell, false, "not an architecture or feature name"},
		{"amd64++avx2", haswell, false, "not an architecture or feature name"},
		{"amd64|", haswell, false, "not an architecture or feature name"},
	}
	for _, tc := range tests {
		err := CheckCPU(tc.req, tc.cpu)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckCPU(%q, %v) = %v; want ok=%v containing %q", tc.req, tc.cpu, err, tc.ok, tc.want)
		}
	}
}
