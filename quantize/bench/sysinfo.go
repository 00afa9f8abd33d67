package bench

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

// SystemInfo is what `modelctl doctor` reports about the machine.
type SystemInfo struct {
	OS          string   `json:"os"`
	Arch        string   `json:"arch"`
	CPU         string   `json:"cpu,omitempty"`
	CPUs        int      `json:"cpus"`
	CPUFeatures []string `json:"cpu_features"`
	// VNNI: the CPU has 8-bit dot-product instructions (AVX-512 VNNI or
	// AVX-VNNI), which onnxruntime's int8 kernels use.
	VNNI bool `json:"vnni"`
	// MemoryTotal and MemoryAvailable are in bytes; 0 when unknown.
	MemoryTotal     uint64 `json:"memory_total"`
	MemoryAvailable uint64 `json:"memory_available"`
	// DiskFree is the free space, in bytes, of the directory asked about.
	DiskPath string `json:"disk_path"`
	DiskFree uint64 `json:"disk_free"`
}

// CPUFeatures lists the SIMD features that matter to onnxruntime's kernels.
func CPUFeatures() []string {
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

// HasVNNI reports whether the CPU has int8 dot-product instructions. Without
// them onnxruntime's u8s8 kernel can saturate on full-range int8 weights, so
// models for such CPUs are quantized with --reduce-range.
func HasVNNI() bool {
	switch runtime.GOARCH {
	case "amd64", "386":
		return cpu.X86.HasAVX512VNNI || cpu.X86.HasAVXVNNI || cpu.X86.HasAMXInt8
	case "arm64":
		return cpu.ARM64.HasASIMDDP
	}
	return false
}

// System describes the machine, with the free disk space of dir.
func System(dir string) SystemInfo {
	s := SystemInfo{
		OS: runtime.GOOS, Arch: runtime.GOARCH, CPU: cpuName(), CPUs: runtime.NumCPU(),
		CPUFeatures: CPUFeatures(), VNNI: HasVNNI(), DiskPath: dir,
	}
	s.MemoryTotal, s.MemoryAvailable = memory()
	s.DiskFree = diskFree(dir)
	return s
}
