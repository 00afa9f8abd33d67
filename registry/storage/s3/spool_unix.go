//go:build unix

package s3

import "os"

// openUnlinked creates a temporary file in dir and removes its name at
// once: the file lives while it is open.
func openUnlinked(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".modelctl-s3-part-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func closeSpoolFile(f *os.File) { f.Close() }
