package storage

// UploadLocksHeld is the number of upload sessions this process holds a lock
// entry for.
func UploadLocksHeld() int { return uploadLocks.Len() }
