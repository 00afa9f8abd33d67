//go:build unix && !linux

package s3

import "os"

func openSpoolFile(dir string) (*os.File, error) { return openUnlinked(dir) }
