package quantize

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/internal/mapped"
)

// A mapped data file that shrinks under the quantizer gives errFault, not
// a crash.
func TestMappedTruncationIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.data")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, unmap, ok := mapped.Range(f, 4096, 1<<20-4096)
	if !ok {
		t.Fatal("mapped.Range failed")
	}
	defer unmap()
	v, ok := viewFloats(b)
	if !ok {
		t.Fatal("mapping not viewable as float32")
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = rangeOf(v)
	if !errors.Is(err, errFault) {
		t.Fatalf("err = %v, want errFault", err)
	}
}
