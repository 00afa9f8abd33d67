// Package hostcpu says what this machine's processor offers, in the names
// that artifacts' CPU requirements use (manifests.CheckCPU).
package hostcpu

import (
	"runtime"

	"golang.org/x/sys/cpu"

	"github.com/modelctl/modelctl/manifests"
)

// Features lists the SIMD features that matter to onnxruntime's kernels.
func Features() []string {
	var f []string
	add := func(ok bool, name string) {
		if ok {
			f = append(f, name)
		}
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		add(cpu.X86.HasAVX, "avx")
		add(cpu.X86.HasAVX2, "avx2")
		add(cpu.X86.HasFMA, "fma")
		add(cpu.X86.HasAVX512F, "avx512f")
		add(cpu.X86.HasAVX512BW, "avx512bw")
		add(cpu.X86.HasAVX512VNNI, "avx512vnni")
		add(cpu.X86.HasAVXVNNI, "avxvnni")
		add(cpu.X86.HasAVX512BF16, "avx512bf16")
		add(cpu.X86.HasAMXInt8, "amx-int8")
	case "arm64":
		add(cpu.ARM64.HasASIMD, "asimd")
		add(cpu.ARM64.HasASIMDDP, "dotprod")
		add(cpu.ARM64.HasI8MM, "i8mm")
		add(cpu.ARM64.HasSVE, "sve")
	}
	if f == nil {
		f = []string{}
	}
	return f
}

// Host is this machine's CPU as a requirement sees it.
func Host() manifests.CPU {
	return manifests.CPU{Arch: runtime.GOARCH, Features: Features()}
}

// HasVNNI reports whether the CPU has 8-bit dot-product instructions. Without
// them onnxruntime's u8×s8 kernel on x86 sums pairs of products in 16 bits,
// and full-range int8 weights can saturate.
func HasVNNI() bool {
	switch runtime.GOARCH {
	case "amd64", "386":
		return cpu.X86.HasAVX512VNNI || cpu.X86.HasAVXVNNI || cpu.X86.HasAMXInt8
	case "arm64":
		return cpu.ARM64.HasASIMDDP
	}
	return false
}
