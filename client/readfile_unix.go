//go:build unix

package client

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// feedMapped feeds w from a memory map of f, a window at a time. ok is
// false when the file cannot be mapped (the caller reads it instead).
// A page past the end of a file truncated meanwhile faults (SIGBUS); the
// fault is caught as a panic and returned as an error.
func feedMapped(f *os.File, off, n int64, w io.Writer) (done int64, ok bool, err error) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < off+n {
		return 0, false, nil
	}
	page := int64(os.Getpagesize())
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			ok = true
			err = fmt.Errorf("read %s: the file shrank while it was read", f.Name())
		}
	}()
	for pos := off; pos < off+n; {
		base := pos &^ (page - 1)
		end := min(base+mapWindow, off+n)
		m, merr := unix.Mmap(int(f.Fd()), base, int(end-base), unix.PROT_READ, unix.MAP_SHARED)
		if merr != nil {
			if done == 0 {
				return 0, false, nil
			}
			return done, true, fmt.Errorf("map %s: %w", f.Name(), merr)
		}
		_ = unix.Madvise(m, unix.MADV_SEQUENTIAL)
		_, werr := w.Write(m[pos-base:])
		_ = unix.Munmap(m)
		if werr != nil {
			return done, true, werr
		}
		done += end - pos
		pos = end
	}
	return done, true, nil
}
