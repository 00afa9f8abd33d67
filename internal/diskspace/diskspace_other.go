//go:build !linux && !darwin && !freebsd && !netbsd && !openbsd && !windows

package diskspace

func free(string) (int64, error) { return 0, ErrUnknown }
