//go:build unix

package client

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/modelctl/modelctl/internal/mapped"
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
		end := min(pos+mapWindow, off+n)
		m, unmap, mok := mapped.Range(f, pos, end-pos)
		if !mok {
			if done == 0 {
				return 0, false, nil
			}
			return done, true, fmt.Errorf("map %s at %d: failed", f.Name(), pos)
		}
		_, werr := w.Write(m)
		unmap()
		if werr != nil {
			return done, true, werr
		}
		done += end - pos
		pos = end
	}
	return done, true, nil
}
