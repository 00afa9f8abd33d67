//go:build unix

package mapped

import (
	"os"

	"golang.org/x/sys/unix"
)

// Range maps n bytes of f at off read-only, populated and advised for a
// sequential read, and returns them with the function that unmaps them.
// ok is false when the file cannot be mapped; read it instead.
func Range(f *os.File, off, n int64) (b []byte, unmap func(), ok bool) {
	if n <= 0 {
		return nil, nil, false
	}
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	m, err := unix.Mmap(int(f.Fd()), start, int(n+off-start), unix.PROT_READ, unix.MAP_SHARED|populate)
	if err != nil {
		return nil, nil, false
	}
	_ = unix.Madvise(m, unix.MADV_SEQUENTIAL)
	return m[off-start:], func() { _ = unix.Munmap(m) }, true
}
