package filesystem_test

import (
	"testing"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

// The shared driver suite, on a temporary directory.
func TestDriverSuite(t *testing.T) {
	open := func(t *testing.T, root string) storage.Driver {
		d, err := filesystem.New(root)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	storagetest.Run(t, storagetest.Config{
		New: func(t *testing.T) storage.Driver { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, d storage.Driver) storage.Driver {
			return open(t, d.(*filesystem.Driver).Root())
		},
	})
}
