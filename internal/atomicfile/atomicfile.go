// Package atomicfile guards data on disk the same way on Linux and Windows:
// a file appears at its final path complete (written to a temporary name
// beside it, synced, closed, renamed), a rename is made durable by syncing
// its directory where the platform can, and processes serialise on
// exclusive locks of open files.
//
// Windows differs from Linux in ways that only show on Windows: a file
// cannot be renamed or removed while it is open (or mapped) without
// sharing, a read-only file cannot be replaced by a rename, a directory
// cannot be fsynced, and a virus scanner or indexer may hold a fresh file
// open for a moment. Every caller closes a file before renaming or
// removing it; the functions here absorb the rest, so the same code path
// runs on both.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data atomically: a temporary file in the same
// directory is written, given perm, synced when sync is true, closed and
// renamed over path, and the directory is synced. Readers see the old
// content or the new, never a mix; after a crash a synced write is there.
func WriteFile(path string, data []byte, perm fs.FileMode, sync bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil && sync {
		err = tmp.Sync()
	}
	// Closed before the rename: Windows refuses to rename an open file.
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if sync {
		return SyncDir(dir)
	}
	return nil
}

// Rename moves oldpath to newpath, replacing a file there (also a read-only
// one, as on Linux). Both must be closed by this process. On Windows a
// sharing violation from another process that holds one of them open for a
// moment (a scanner, an indexer) is retried for a short while.
func Rename(oldpath, newpath string) error { return rename(oldpath, newpath) }

// SyncDir makes the renames and creations in dir durable. Windows has no
// directory fsync (NTFS journals its metadata), and there it does nothing.
func SyncDir(dir string) error { return syncDir(dir) }

// Lock takes an exclusive lock on f, waiting for it. Closing f releases it,
// also when the process dies. The lock is advisory on Linux (flock) and
// mandatory for the first byte on Windows (LockFileEx): take it on a
// lock file that nobody reads.
func Lock(f *os.File) error { return lock(f) }

// Unlock releases a lock taken with Lock.
func Unlock(f *os.File) error { return unlock(f) }

func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}
