package s3

import (
	"fmt"
	"io"
	"os"
)

// A part is assembled on local disk, not in memory. S3 wants parts of at
// least 5 MiB (8 MiB by default here), and an upload's bytes arrive as
// slowly as its client sends them: a part buffer in memory was 8 MiB pinned
// per connection while it waited (2.2 GiB of RSS under the load test's 200
// slow bodies), and (Concurrency+1) parts per fast writer besides. Taking
// part buffers from a bounded pool instead would make writers wait for one
// another's half-filled parts (and deadlock when every buffer is half full);
// a spool file costs a page-cache copy of each byte, which is small next to
// the upload to S3, and it bounds the server's memory by its copy buffers
// alone (storage.LargeBuffers), whatever the number of writes in progress.
// Spool files have no name once open where the platform allows (Linux
// O_TMPFILE, or unlinked at once on Unix; deleted on close on Windows), so
// a killed server leaves none behind.

// spool is one part (or the tail after the last part) being assembled.
type spool struct {
	f *os.File
	n int64
}

func (d *Driver) newSpool() (*spool, error) {
	f, err := openSpoolFile(d.cfg.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("%s: spool file in %s: %w", driverName, d.cfg.SpoolDir, err)
	}
	return &spool{f: f}, nil
}

func (s *spool) write(b []byte) error {
	n, err := s.f.WriteAt(b, s.n)
	s.n += int64(n)
	if err != nil {
		return fmt.Errorf("%s: spool file: %w", driverName, err)
	}
	return nil
}

// section reads bytes [off, n) of the spool.
func (s *spool) section(off int64) *io.SectionReader {
	return io.NewSectionReader(s.f, off, s.n-off)
}

func (s *spool) close() {
	if s != nil {
		closeSpoolFile(s.f)
	}
}
