package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing []byte
		perm     os.FileMode
		sync     bool
	}{
		{"new file", nil, 0o644, true},
		{"replaces", []byte("old content, longer than the new"), 0o600, true},
		{"replaces a read-only file", []byte("old"), 0o444, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			p := filepath.Join(dir, "f.yaml")
			if tc.existing != nil {
				if err := os.WriteFile(p, tc.existing, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o444); err != nil {
					t.Fatal(err)
				}
			}
			want := []byte("key: value\r\n")
			if err := WriteFile(p, want, tc.perm, tc.sync); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != string(want) {
				t.Fatalf("read back %q, %v; want %q", got, err, want)
			}
			// Windows keeps only the read-only bit of a mode.
			mask := os.FileMode(0o777)
			if runtime.GOOS == "windows" {
				mask = 0o200
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&mask != tc.perm&mask {
				t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tc.perm)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("%d entries in the directory, want only the file: %v", len(entries), entries)
			}
		})
	}
}

// TestRenameReplacesReadOnly: cache blobs are read-only and installs link
// them, so an update renames over a read-only file; Linux allows it and
// Rename must everywhere.
func TestRenameReplacesReadOnly(t *testing.T) {
	dir := tempDir(t)
	dst := filepath.Join(dir, "model.onnx.data")
	src := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(dst, []byte("v1"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "v2" {
		t.Fatalf("after rename: %q, %v", b, err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("the source is still there: %v", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(tempDir(t)); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(tempDir(t), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}

// twoDescriptors opens one lock file twice, as two processes would.
func twoDescriptors(t *testing.T) (*os.File, *os.File) {
	p := filepath.Join(tempDir(t), "x.lock")
	open := func() *os.File {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	return open(), open()
}

// TestLockExcludes: two descriptors of one lock file, as two processes
// would hold them, take turns.
func TestLockExcludes(t *testing.T) {
	a, b := twoDescriptors(t)
	defer a.Close()
	defer b.Close()
	if err := Lock(a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var bLockedAt time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := Lock(b); err != nil {
			t.Error(err)
			return
		}
		bLockedAt = time.Now()
		_ = Unlock(b)
	}()
	time.Sleep(100 * time.Millisecond)
	released := time.Now()
	if err := Unlock(a); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if bLockedAt.Before(released) {
		t.Fatal("the second descriptor took the lock while the first held it")
	}
}

// TestTryLock: TryLock takes a free lock, and reports a held one as held
// without waiting; closing the holder frees it.
func TestTryLock(t *testing.T) {
	a, b := twoDescriptors(t)
	defer b.Close()
	if ok, err := TryLock(a); !ok || err != nil {
		t.Fatalf("TryLock of a free lock: %v, %v", ok, err)
	}
	if ok, err := TryLock(b); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v, %v; want false, nil", ok, err)
	}
	a.Close()
	if ok, err := TryLock(b); !ok || err != nil {
		t.Fatalf("TryLock after the holder closed: %v, %v", ok, err)
	}
}

// tempDir is t.TempDir, removed file by file: these tests also run as a
// Windows program under Wine 8, whose ntdll lacks the delete call Go's
// os.RemoveAll uses on Windows (FileDispositionInformationEx).
func tempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "atomicfile-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var paths []string
		_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				paths = append(paths, p)
			}
			return nil
		})
		for i := len(paths) - 1; i >= 0; i-- {
			if err := os.Remove(paths[i]); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})
	return dir
}
