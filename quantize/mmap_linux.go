package quantize

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapRange maps n bytes of f at off read-only. Reading weights through a
// mapping skips the copy from the page cache into a buffer, which is a
// third of the memory traffic of INT8 quantization. Only the chunk being
// processed is mapped, so resident memory stays bounded by the chunk size.
func mapRange(f *os.File, off, n int64) ([]byte, func(), bool) {
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	b, err := unix.Mmap(int(f.Fd()), start, int(n+off-start), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, false
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL|unix.MADV_WILLNEED)
	return b[off-start:], func() { _ = unix.Munmap(b) }, true
}
