//go:build windows

package client

import (
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// fileID: os.Stat on Windows carries no file index; path, size and mtime
// (100 ns resolution there) key the digest cache.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }

// linkCount is how many names the file at path has (NTFS hardlinks, which
// installs of large blobs are), read from its handle: without it `cache
// prune` could judge no blob on Windows.
func linkCount(path string, _ fs.FileInfo) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var info windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(windows.Handle(f.Fd()), &info); err != nil {
		return 0, false
	}
	return int(info.NumberOfLinks), true
}
