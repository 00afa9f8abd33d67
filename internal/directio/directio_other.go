//go:build !linux

package directio

import (
	"errors"
	"os"
)

// Supported reports whether this platform has direct I/O at all.
const Supported = false

func set(*os.File, bool) error { return errors.New("direct I/O is not supported here") }
