package onnx

import (
	"os"

	"golang.org/x/sys/unix"
)

// advise asks the kernel to start reading a byte range into the page cache,
// so the disk works while the caller computes on the previous tensor.
func advise(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
}
