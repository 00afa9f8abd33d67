//go:build !linux

package filesystem

import (
	"errors"
	"os"
)

func setDirect(*os.File, bool) error { return errors.New("direct I/O not supported") }

const directIOSupported = false
