//go:build unix

package registry

import (
	"errors"
	"syscall"
)

func isQuotaError(err error) bool { return errors.Is(err, syscall.EDQUOT) }
