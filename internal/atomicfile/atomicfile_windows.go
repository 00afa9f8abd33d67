//go:build windows

package atomicfile

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// renameRetry bounds how long a rename waits for another process to close
// one of its files.
const renameRetry = 2 * time.Second

func rename(oldpath, newpath string) error {
	deadline := time.Now().Add(renameRetry)
	for {
		err := os.Rename(oldpath, newpath)
		if err == nil {
			return nil
		}
		switch {
		case errors.Is(err, windows.ERROR_ACCESS_DENIED) && clearReadOnly(newpath):
			// Linux replaces a read-only file by rename; MoveFileEx refuses
			// to until the attribute is gone.
			continue
		case (errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
			errors.Is(err, windows.ERROR_LOCK_VIOLATION)) && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return err
	}
}

// clearReadOnly drops the read-only attribute of an existing regular file
// and reports whether it did.
func clearReadOnly(path string) bool {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return false
	}
	attrs, err := windows.GetFileAttributes(p)
	if err != nil || attrs&windows.FILE_ATTRIBUTE_READONLY == 0 || attrs&windows.FILE_ATTRIBUTE_DIRECTORY != 0 {
		return false
	}
	return windows.SetFileAttributes(p, attrs&^windows.FILE_ATTRIBUTE_READONLY) == nil
}

// syncDir has nothing to sync (NTFS journals its metadata); it still
// reports a directory that is not there, as the Linux one does.
func syncDir(dir string) error {
	_, err := os.Stat(dir)
	return err
}

func lock(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, &ol)
}

func tryLock(f *os.File) (bool, error) {
	var ol windows.Overlapped
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if err == windows.ERROR_LOCK_VIOLATION || err == windows.ERROR_IO_PENDING {
		return false, nil
	}
	return err == nil, err
}

func unlock(f *os.File) error {
	var ol windows.Overlapped
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
