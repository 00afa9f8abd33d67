//go:build !linux

package quantize

import "os"

// mapRange is not used off Linux: weights are read with ReadAt.
func mapRange(*os.File, int64, int64) ([]byte, func(), bool) { return nil, nil, false }
