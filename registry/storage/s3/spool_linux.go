package s3

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openSpoolFile opens a nameless file in dir (O_TMPFILE), or, where the
// filesystem does not have those, a named one that is unlinked at once.
func openSpoolFile(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, err
	}
	return openUnlinked(dir)
}
