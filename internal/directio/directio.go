// Package directio writes large files around the page cache (O_DIRECT)
// where the platform and filesystem allow it.
//
// On the virtual machines modelctl is measured on, filling the page cache
// with a multi-GB blob and writing it back costs more CPU than hashing it
// (0.3-2 s of system time per GiB buffered, 0.1-0.4 s direct), and nobody
// reads a freshly stored blob back at once. Direct writes need
// block-aligned offsets, lengths and memory: Buffer hands out aligned
// memory, and callers write whole multiples of Align at aligned offsets.
package directio

import (
	"os"
	"unsafe"
)

// Align is the alignment of offsets, lengths and memory for direct writes
// (the largest logical block size in common use).
const Align = 4096

// Buffer returns n bytes (rounded up to Align) of Align-aligned memory.
func Buffer(n int) []byte {
	n = int(RoundUp(int64(n)))
	raw := make([]byte, n+Align)
	off := int(Align - uintptr(unsafe.Pointer(&raw[0]))%Align)
	if off == Align {
		off = 0
	}
	return raw[off : off+n : off+n]
}

// RoundUp rounds n up to a multiple of Align.
func RoundUp(n int64) int64 { return (n + Align - 1) &^ (Align - 1) }

// Aligned reports whether b starts on an Align boundary.
func Aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%Align == 0
}

// Set turns direct I/O on or off for f. Filesystems without direct I/O
// (tmpfs) and platforms without it refuse, and f stays buffered.
func Set(f *os.File, on bool) error { return set(f, on) }
