package atomicfile_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/atomicfile"
)

// tempDir is t.TempDir without failing on its removal: Wine cannot
// remove nested directories a test made (unlinkat: Invalid function),
// which says nothing about the code under test.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mkdirnolinks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func TestMkdirNoLinks(t *testing.T) {
	root := tempDir(t)
	var made []string
	record := func(d string) error { made = append(made, d); return os.Mkdir(d, 0o755) }
	if err := atomicfile.MkdirNoLinks(root, "a/b/c", record); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), filepath.Join(root, "a", "b", "c")}
	if strings.Join(made, "|") != strings.Join(want, "|") {
		t.Fatalf("created %v, want %v", made, want)
	}
	if err := atomicfile.MkdirNoLinks(root, "a/b/c", nil); err != nil {
		t.Fatalf("existing directories: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.MkdirNoLinks(root, "file/x", nil); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("through a file: %v", err)
	}
	if runtime.GOOS == "windows" {
		return // symbolic links need a privilege there
	}
	outside := tempDir(t)
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.MkdirNoLinks(root, "link/x", nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("through a link: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote through the link: %v", entries)
	}
}
