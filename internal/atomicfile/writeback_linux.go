//go:build linux

package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// StartWriteback asks the kernel to start writing [off, off+n) of f to disk
// now, without waiting: the final fsync of a large download then finds
// little left to write, instead of stalling on all of it at the end.
func StartWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
