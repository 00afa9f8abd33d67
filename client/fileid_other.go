//go:build !unix

package client

import (
	"io/fs"
	"os"
)

// fileID has no inode to offer here; path, size and mtime still key the
// digest cache.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }

// lockFile does nothing here: concurrent pulls of one blob are not
// serialised, and a clash ends in a digest error, never a bad install.
func lockFile(*os.File) error { return nil }

// linkCount is unknown here.
func linkCount(fs.FileInfo) (int, bool) { return 0, false }
