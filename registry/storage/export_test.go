package storage

// UploadLocksHeld is the number of upload sessions this process holds a lock
// entry for.
func UploadLocksHeld() int { return uploadLocks.Len() }

// SetTagIndexLimit sets the largest tag index and returns a function that
// puts the old limit back.
func SetTagIndexLimit(n int64) (restore func()) {
	old := tagIndexLimit
	tagIndexLimit = n
	return func() { tagIndexLimit = old }
}
