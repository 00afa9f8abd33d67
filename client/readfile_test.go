package client

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestFeedFileReadsTheRange(t *testing.T) {
	defer func(v int64) { mapWindow = v }(mapWindow)
	mapWindow = 64 << 10
	data := make([]byte, 3*mapWindow+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]int64{{0, int64(len(data))}, {1, 4095}, {4097, 2*mapWindow + 3}, {int64(len(data)) - 1, 1}, {5, 0}} {
		var got bytes.Buffer
		n, err := feedFile(f, r[0], r[1], &got)
		if err != nil || n != r[1] || !bytes.Equal(got.Bytes(), data[r[0]:r[0]+r[1]]) {
			t.Fatalf("feedFile(%d, %d): %d bytes, %v, equal %v", r[0], r[1], n, err, bytes.Equal(got.Bytes(), data[r[0]:r[0]+r[1]]))
		}
	}
	if _, err := feedFile(f, 10, int64(len(data)), &bytes.Buffer{}); err == nil {
		t.Fatal("reading past the end of the file did not fail")
	}
}

// truncatingWriter shrinks the file being fed to it, then reads what it was
// given: from a memory map, that is a fault the reader must turn into an
// error, not a crash.
type truncatingWriter struct {
	path string
	sum  byte
}

func (w *truncatingWriter) Write(p []byte) (int, error) {
	if err := os.Truncate(w.path, 0); err != nil {
		return 0, err
	}
	for _, b := range p {
		w.sum += b
	}
	return len(p), nil
}

func TestFeedFileSurvivesTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := feedFile(f, 0, 1<<20, &truncatingWriter{path: path}); err == nil {
		t.Fatal("a file truncated while it was read gave no error")
	} else {
		t.Log(err)
	}
}
