//go:build !unix

package mapped

import "os"

// Range is not available here: read the file instead.
func Range(*os.File, int64, int64) ([]byte, func(), bool) { return nil, nil, false }
