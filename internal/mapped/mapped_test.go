package mapped

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRangeMapsTheBytes(t *testing.T) {
	data := make([]byte, 3*4096+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, unmap, ok := Range(f, 4097, 8000)
	if !ok {
		t.Skip("no mappings on this platform")
	}
	defer unmap()
	if !bytes.Equal(b, data[4097:4097+8000]) {
		t.Fatal("the mapping does not hold the file's bytes")
	}
	if _, _, ok := Range(f, 0, 0); ok {
		t.Fatal("an empty range mapped")
	}
}
