package bench

import (
	"runtime"

	"github.com/modelctl/modelctl/internal/hostcpu"
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
func CPUFeatures() []string { return hostcpu.Features() }

// HasVNNI reports whether the CPU has int8 dot-product instructions. Without
// them onnxruntime's u8s8 kernel can saturate on full-range int8 weights
// (modelctl quantize's default is portable; see quantize/portable.go).
func HasVNNI() bool { return hostcpu.HasVNNI() }

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
