//go:build unix

package client

import (
	"io/fs"
	"syscall"
)

func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // Dev is int32 on some unix systems
	}
	return 0, 0
}

// linkCount is how many names the file at path (whose FileInfo is fi) has.
func linkCount(_ string, fi fs.FileInfo) (int, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Nlink), true //nolint:unconvert // Nlink's type differs between systems
	}
	return 0, false
}
