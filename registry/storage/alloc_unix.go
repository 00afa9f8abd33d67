//go:build unix

package storage

import (
	"golang.org/x/sys/unix"

	"github.com/modelctl/modelctl/internal/directio"
)

// allocLarge returns n bytes of page-aligned memory outside the Go heap.
// The budget's buffers live as long as the process; on the heap they would
// count as live data, and the collector lets the heap grow to twice the
// live data before it runs (GOGC=100): 32 MiB of buffers would make room
// for 32 MiB of garbage besides. Mapped memory is theirs alone.
func allocLarge(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return directio.Buffer(n)
	}
	return b
}
