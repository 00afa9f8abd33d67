package s3

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// openSpoolFile creates a temporary file in dir that Windows deletes when
// its last handle closes (also when the process dies): an open file cannot
// be removed there.
func openSpoolFile(dir string) (*os.File, error) {
	name := filepath.Join(dir, ".modelctl-s3-part-"+randomName())
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, windows.FILE_SHARE_READ|windows.FILE_SHARE_DELETE,
		nil, windows.CREATE_NEW, windows.FILE_ATTRIBUTE_TEMPORARY|windows.FILE_FLAG_DELETE_ON_CLOSE, 0)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: name, Err: err}
	}
	return os.NewFile(uintptr(h), name), nil
}

func closeSpoolFile(f *os.File) { f.Close() }
