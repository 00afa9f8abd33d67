//go:build !linux || !cgo

package bench

// releaseFreedMemory: only glibc needs a trim (trim_linux_cgo.go).
func releaseFreedMemory() {}
