package filesystem_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

// The default (direct I/O where the filesystem allows it) runs in
// TestDriverSuite; this runs the same suite through the page cache.
func TestDriverSuiteBuffered(t *testing.T) {
	defer func(v bool) { filesystem.DirectIO = v }(filesystem.DirectIO)
	filesystem.DirectIO = false
	storagetest.Run(t, suiteConfig())
}

// TestWriterUnalignedResume resumes writes at offsets that are not block
// aligned, with writes of odd sizes, in both I/O modes: the direct path must
// carry the partial block over and still produce the exact bytes.
func TestWriterUnalignedResume(t *testing.T) {
	data := make([]byte, 3<<20+777)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	cuts := []int{1, 4095, 4096, 4097, 1<<20 - 1, 1 << 20, 1<<20 + 4096 + 3, 2<<20 + 12345, len(data)}
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) {
			defer func(v bool) { filesystem.DirectIO = v }(filesystem.DirectIO)
			filesystem.DirectIO = direct
			ctx := context.Background()
			d, err := filesystem.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			off := 0
			for _, cut := range cuts {
				w, err := d.Writer(ctx, "a/data", int64(off))
				if err != nil {
					t.Fatalf("Writer at %d: %v", off, err)
				}
				// Odd-sized writes, to cross buffer boundaries unevenly.
				for p := off; p < cut; {
					n := min(cut-p, 300_007)
					if _, err := w.Write(data[p : p+n]); err != nil {
						t.Fatal(err)
					}
					p += n
				}
				if w.Size() != int64(cut) {
					t.Fatalf("Size = %d, want %d", w.Size(), cut)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				off = cut
			}
			w, err := d.Writer(ctx, "a/data", int64(off))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := d.Reader(ctx, "a/data", 0)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("content differs: %d bytes, want %d", len(got), len(data))
			}
		})
	}
}
