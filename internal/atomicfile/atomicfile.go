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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// TryLock takes the lock Lock takes if nobody holds it, and reports
// whether it did; it does not wait.
func TryLock(f *os.File) (bool, error) { return tryLock(f) }

// Unlock releases a lock taken with Lock.
func Unlock(f *os.File) error { return unlock(f) }

func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// MkdirNoLinks creates root/rel (slash-separated) directory by directory,
// refusing to go through anything that is not a real directory: a symbolic
// link planted in a target could otherwise redirect a write outside it.
// mkdir creates one missing directory (nil: os.Mkdir, a directory that
// appeared meanwhile being fine); callers that undo pass their own to
// record what they created.
func MkdirNoLinks(root, rel string, mkdir func(dir string) error) error {
	if mkdir == nil {
		mkdir = func(d string) error {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create %s: %w", d, err)
			}
			return nil
		}
	}
	cur := root
	for _, elem := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, elem)
		fi, err := os.Lstat(cur)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: refusing to install through it", cur)
		case err == nil:
			return fmt.Errorf("%s exists and is not a directory", cur)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := mkdir(cur); err != nil {
			return err
		}
	}
	return nil
}
