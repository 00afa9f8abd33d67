//go:build !linux

package atomicfile

import "os"

// StartWriteback is a no-op where sync_file_range does not exist; the final
// fsync does all the work.
func StartWriteback(*os.File, int64, int64) {}
