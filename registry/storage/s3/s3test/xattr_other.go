//go:build !unix

package s3test

// userXattrs: no user.* extended attributes to probe here; versitygw keeps
// its metadata in a sidecar directory.
func userXattrs(dir string) bool { return false }
