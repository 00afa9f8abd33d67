package filesystem_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

// The default (direct I/O where the filesystem allows it) runs in
// TestDriverSuite; this runs the same suite through the page cache.
func TestDriverSuiteBuffered(t *testing.T) {
	storagetest.Run(t, suiteConfigWith(filesystem.Options{DirectIO: false}))
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
			ctx := context.Background()
			d, err := filesystem.Open(t.TempDir(), filesystem.Options{DirectIO: direct})
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

// TestWriterDirectChunks feeds the writer what the store's copy hands it:
// aligned chunks of megabytes (written directly at aligned offsets), odd
// ones that move the offset off the block grid (written through the page
// cache, with the aligned chunks after them too), and a resume at an
// aligned offset that goes back to direct writes. The bytes must come out
// exact whichever way each chunk went.
func TestWriterDirectChunks(t *testing.T) {
	big := directio.Buffer(4 << 20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	odd := []byte("seventeen bytes!!")
	// Each session is a list of chunks; sessions resume where the last ended.
	sessions := [][][]byte{
		{big, big[:2<<20], odd, big},
		// Back onto the grid: 2 × 17 + 4062 = 4096.
		{odd, big[:4096-2*len(odd)]},
		{big, big[:4096*3], big[:1<<20], big[:5]},
	}
	var want []byte
	ctx := context.Background()
	d, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, chunks := range sessions {
		w, err := d.Writer(ctx, "a/data", int64(len(want)))
		if err != nil {
			t.Fatalf("session %d: Writer at %d: %v", i, len(want), err)
		}
		for _, c := range chunks {
			if n, err := w.Write(c); err != nil || n != len(c) {
				t.Fatalf("session %d: Write(%d bytes) = %d, %v", i, len(c), n, err)
			}
			want = append(want, c...)
		}
		if w.Size() != int64(len(want)) {
			t.Fatalf("session %d: Size = %d, want %d", i, w.Size(), len(want))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := d.Writer(ctx, "a/data", int64(len(want)))
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
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs: %d bytes, want %d", len(got), len(want))
	}
}
