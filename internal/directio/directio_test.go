package directio

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBufferIsAligned(t *testing.T) {
	for _, n := range []int{1, Align - 1, Align, 3*Align + 5, 1 << 20} {
		b := Buffer(n)
		if !Aligned(b) || len(b)%Align != 0 || len(b) < n {
			t.Fatalf("Buffer(%d): len %d, aligned %v", n, len(b), Aligned(b))
		}
	}
	if Aligned(nil) {
		t.Fatal("an empty slice is not aligned")
	}
}

func TestDirectWriteReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	direct := Set(f, true) == nil
	if Supported && !direct {
		t.Logf("this filesystem refuses O_DIRECT; the write below is buffered")
	}
	b := Buffer(2 * Align)
	for i := range b {
		b[i] = byte(i)
	}
	if _, err := f.WriteAt(b, Align); err != nil {
		t.Fatal(err)
	}
	if err := Set(f, false); err != nil && direct {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3*Align || got[Align+5] != 5 || got[0] != 0 {
		t.Fatalf("read back %d bytes", len(got))
	}
}
