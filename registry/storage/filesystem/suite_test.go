package filesystem_test

import (
	"testing"

	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

// suiteConfig runs the shared driver suite on temporary directories; Reopen
// opens a second driver on the same directory, as another process would.
func suiteConfig() storagetest.Config {
	return suiteConfigWith(filesystem.Options{DirectIO: directio.Supported})
}

func suiteConfigWith(opts filesystem.Options) storagetest.Config {
	open := func(t *testing.T, root string) storage.Driver {
		d, err := filesystem.Open(root, opts)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return storagetest.Config{
		New: func(t *testing.T) storage.Driver { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, d storage.Driver) storage.Driver {
			return open(t, d.(*filesystem.Driver).Root())
		},
	}
}

// The shared driver suite, with direct I/O where the filesystem allows it.
func TestDriverSuite(t *testing.T) { storagetest.Run(t, suiteConfig()) }

// The tag index the Store keeps beside the tag links, with two drivers on
// one directory as two registries would open it.
func TestTagIndex(t *testing.T) { storagetest.TagIndex(t, suiteConfig()) }

// Uploads waiting for bytes hold no large buffer; fast ones share the
// budget (storagetest.UploadMemory).
func TestUploadMemory(t *testing.T) {
	storagetest.UploadMemory(t, func(t *testing.T) storage.Driver {
		d, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// A tag move in a repository of 1,000 tags (docs/registry.md quotes it).
func BenchmarkMoveTag1000Tags(b *testing.B) {
	d, err := filesystem.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	storagetest.BenchMoveTag(b, d, 1000)
}
