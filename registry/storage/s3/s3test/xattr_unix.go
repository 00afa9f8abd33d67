//go:build unix

package s3test

import (
	"os"

	"golang.org/x/sys/unix"
)

// userXattrs reports whether dir's filesystem stores user.* extended
// attributes.
func userXattrs(dir string) bool {
	f, err := os.CreateTemp(dir, ".xattr-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	return unix.Setxattr(name, "user.modelctl-probe", []byte("1"), 0) == nil
}
