// Package diskspace says how many bytes a directory's filesystem can still
// take, so that a size declared by an untrusted party (a registry's
// manifest) is checked against it before anything is planned or allocated.
package diskspace

import "errors"

// ErrUnknown is returned where the free space cannot be asked for.
var ErrUnknown = errors.New("free disk space unknown on this system")

// Free returns the bytes available to this user on the filesystem of dir.
func Free(dir string) (int64, error) { return free(dir) }
