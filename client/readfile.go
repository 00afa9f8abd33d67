package client

import (
	"fmt"
	"io"
	"os"
)

// mapWindow is how much of a file is mapped at a time (a variable for tests).
var mapWindow int64 = 64 << 20

// feedFile writes bytes [off, off+n) of f to w (a hash) and returns how
// many it wrote. Where the platform can, the bytes are read from a memory
// map of the file, not copied out of the page cache: for a push, which
// sends the file with sendfile and hashes it beside, that copy was the
// biggest cost after the hash itself (measured: 0.15-0.25 s of CPU per
// 2 GiB). A file that shrinks while it is read is an error either way.
func feedFile(f *os.File, off, n int64, w io.Writer) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	if done, ok, err := feedMapped(f, off, n, w); ok {
		return done, err
	}
	m, err := io.CopyBuffer(w, io.NewSectionReader(f, off, n), make([]byte, 1<<20))
	if err == nil && m < n {
		err = fmt.Errorf("%s: %w", f.Name(), io.ErrUnexpectedEOF)
	}
	return m, err
}
