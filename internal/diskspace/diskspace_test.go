package diskspace

import "testing"

func TestFree(t *testing.T) {
	n, err := Free(t.TempDir())
	if err != nil || n <= 0 {
		t.Fatalf("Free = %d, %v; want a positive size", n, err)
	}
	if _, err := Free("/does/not/exist"); err == nil {
		t.Fatal("Free of a missing directory: no error")
	}
}
