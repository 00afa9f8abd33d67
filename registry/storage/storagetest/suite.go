// Package storagetest is the executable specification of storage.Driver: one
// table-driven suite that every driver runs against a real backend (a
// temporary directory, a real S3 server), so that the layout above can rely
// on the same behaviour everywhere.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelctl/modelctl/registry/storage"
)

// Config describes the driver under test.
type Config struct {
	// New returns a driver over a fresh, empty store, private to the
	// (sub)test t. It is called once per subtest.
	New func(t *testing.T) storage.Driver
	// Reopen returns a second, independent driver over the same store as d,
	// the way another process (or the same one after a restart) opens it.
	// Nil means resumed writes reuse d.
	Reopen func(t *testing.T, d storage.Driver) storage.Driver
	// LargeSize is the size of the multi-MiB write tests; 0 means 13 MiB
	// and a few bytes, enough to cross two S3 parts of the minimum size.
	LargeSize int
}

// RunDriverSuite runs the whole suite with drivers from newDriver.
func RunDriverSuite(t *testing.T, newDriver func(t *testing.T) storage.Driver) {
	Run(t, Config{New: newDriver})
}

// Run runs the whole suite against cfg's driver, one subtest per behaviour.
func Run(t *testing.T, cfg Config) {
	if cfg.New == nil {
		t.Fatal("storagetest: Config.New is nil")
	}
	if cfg.Reopen == nil {
		cfg.Reopen = func(_ *testing.T, d storage.Driver) storage.Driver { return d }
	}
	if cfg.LargeSize <= 0 {
		cfg.LargeSize = 13<<20 + 4099
	}
	s := &suite{cfg: cfg}
	tests := []struct {
		name string
		fn   func(t *testing.T, d storage.Driver)
	}{
		{"Name", s.testName},
		{"InvalidPaths", s.testInvalidPaths},
		{"PutGetContent", s.testPutGetContent},
		{"GetContentLimit", s.testGetContentLimit},
		{"PutContentIf", s.testPutContentIf},
		{"PutContentIfRace", s.testPutContentIfRace},
		{"Reader", s.testReader},
		{"Stat", s.testStat},
		{"List", s.testList},
		{"Move", s.testMove},
		{"Delete", s.testDelete},
		{"WriterCommit", s.testWriterCommit},
		{"WriterResume", s.testWriterResume},
		{"WriterInvalidOffset", s.testWriterInvalidOffset},
		{"WriterCancel", s.testWriterCancel},
		{"WriterLarge", s.testWriterLarge},
		{"WriterResumeInsideLargeWrite", s.testWriterResumeInsideLarge},
		{"ConcurrentWriters", s.testConcurrentWriters},
		{"CancelledContext", s.testCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, cfg.New(t))
		})
	}
	// Optional capabilities, tested where a driver has them.
	t.Run("PutStream", func(t *testing.T) {
		d := cfg.New(t)
		if _, ok := d.(StreamPutter); !ok {
			t.Logf("%s driver has no PutStream; nothing to test", d.Name())
			return
		}
		s.testPutStream(t, d)
	})
}

// StreamPutter is the optional one-pass put (storage.StreamPutter).
type StreamPutter = storage.StreamPutter

type suite struct{ cfg Config }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	var nf *storage.PathNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("%s: err = %v (%T), want *storage.PathNotFoundError", what, err, err)
	}
	if !storage.IsNotFound(err) {
		t.Fatalf("%s: storage.IsNotFound(%v) = false", what, err)
	}
}

func wantInvalidPath(t *testing.T, what string, err error) {
	t.Helper()
	var ip *storage.InvalidPathError
	if !errors.As(err, &ip) {
		t.Fatalf("%s: err = %v (%T), want *storage.InvalidPathError", what, err, err)
	}
}

func put(t *testing.T, d storage.Driver, p string, data []byte) {
	t.Helper()
	if err := d.PutContent(ctxFor(t), p, data); err != nil {
		t.Fatalf("PutContent(%q): %v", p, err)
	}
}

func get(t *testing.T, d storage.Driver, p string) []byte {
	t.Helper()
	b, err := d.GetContent(ctxFor(t), p, 1<<20)
	if err != nil {
		t.Fatalf("GetContent(%q): %v", p, err)
	}
	return b
}

// readAll reads the object through Reader, so that large objects are checked
// through the streaming path.
func readAll(t *testing.T, d storage.Driver, p string, offset int64) []byte {
	t.Helper()
	r, err := d.Reader(ctxFor(t), p, offset)
	if err != nil {
		t.Fatalf("Reader(%q, %d): %v", p, offset, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Reader(%q, %d): read: %v", p, offset, err)
	}
	return b
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func wantContent(t *testing.T, d storage.Driver, p string, want []byte) {
	t.Helper()
	got := readAll(t, d, p, 0)
	if len(got) != len(want) || sum(got) != sum(want) {
		t.Fatalf("%s: %d bytes sha256 %s, want %d bytes sha256 %s", p, len(got), sum(got)[:16], len(want), sum(want)[:16])
	}
	fi, err := d.Stat(ctxFor(t), p)
	if err != nil {
		t.Fatalf("Stat(%q): %v", p, err)
	}
	if fi.Size != int64(len(want)) || fi.IsDir {
		t.Fatalf("Stat(%q) = size %d dir %v, want size %d, an object", p, fi.Size, fi.IsDir, len(want))
	}
}

func (s *suite) testName(t *testing.T, d storage.Driver) {
	if d.Name() == "" {
		t.Fatal("Name() is empty")
	}
}

func (s *suite) testInvalidPaths(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	put(t, d, "ok/object", []byte("x"))
	bad := []string{
		"..", "../x", "a/../b", "a/..", "/abs", "/", "a//b", "a/", "./a", "a/./b", ".",
		".hidden", "a/.hidden", "a\\b", "a\x00b",
	}
	for _, p := range append(bad, "") {
		t.Run(fmt.Sprintf("%q", p), func(t *testing.T) {
			_, err := d.GetContent(ctx, p, 10)
			wantInvalidPath(t, "GetContent", err)
			wantInvalidPath(t, "PutContent", d.PutContent(ctx, p, []byte("x")))
			wantInvalidPath(t, "PutContentIf", d.PutContentIf(ctx, p, []byte("x"), ""))
			r, err := d.Reader(ctx, p, 0)
			if err == nil {
				r.Close()
			}
			wantInvalidPath(t, "Reader", err)
			wantInvalidPath(t, "Move from", d.Move(ctx, p, "ok/dst"))
			wantInvalidPath(t, "Move to", d.Move(ctx, "ok/object", p))
			wantInvalidPath(t, "Delete", d.Delete(ctx, p))
			w, err := d.Writer(ctx, p, 0)
			if err == nil {
				_ = w.Cancel(ctx)
			}
			wantInvalidPath(t, "Writer", err)
		})
	}
	// The empty path is the root directory: it can be listed and stat'ed.
	for _, p := range bad {
		t.Run(fmt.Sprintf("dir %q", p), func(t *testing.T) {
			_, err := d.Stat(ctx, p)
			wantInvalidPath(t, "Stat", err)
			_, err = d.List(ctx, p)
			wantInvalidPath(t, "List", err)
		})
	}
	// A refused Move left its source alone.
	if got := get(t, d, "ok/object"); string(got) != "x" {
		t.Fatalf("ok/object = %q after refused moves, want %q", got, "x")
	}
}

func (s *suite) testPutGetContent(t *testing.T, d storage.Driver) {
	tests := []struct {
		name string
		path string
		data []byte
	}{
		{"empty", "c/empty", []byte{}},
		{"small", "c/small", []byte("sha256:0123")},
		{"binary", "c/bin", []byte{0, 1, 2, 0xff, 0, '\n', 0}},
		{"nested", "c/deep/er/and/deeper/obj", []byte("deep")},
		{"64KiB", "c/big", randomBytes(1, 64<<10)},
		{"dots and dashes", "c/v1.0-rc_1/x.y", []byte("name")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			put(t, d, tc.path, tc.data)
			if got := get(t, d, tc.path); !bytes.Equal(got, tc.data) {
				t.Fatalf("GetContent = %d bytes %q..., want %d bytes", len(got), got[:min(len(got), 16)], len(tc.data))
			}
			// Replacing is complete, also with shorter content.
			repl := []byte("r")
			put(t, d, tc.path, repl)
			if got := get(t, d, tc.path); !bytes.Equal(got, repl) {
				t.Fatalf("after replace GetContent = %q, want %q", got, repl)
			}
		})
	}
	_, err := d.GetContent(ctxFor(t), "c/missing", 10)
	wantNotFound(t, "GetContent of a missing object", err)
	_, err = d.GetContent(ctxFor(t), "c/deep", 10)
	wantNotFound(t, "GetContent of a directory", err)
	_, err = d.GetContent(ctxFor(t), "c/smal", 10)
	wantNotFound(t, "GetContent of a name prefix", err)
}

func (s *suite) testGetContentLimit(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	data := randomBytes(2, 1000)
	put(t, d, "l/obj", data)
	put(t, d, "l/empty", nil)
	tests := []struct {
		path    string
		limit   int64
		wantErr bool
	}{
		{"l/obj", 1000, false},
		{"l/obj", 1 << 30, false},
		{"l/obj", 999, true},
		{"l/obj", 0, true},
		{"l/empty", 0, false},
	}
	for _, tc := range tests {
		got, err := d.GetContent(ctx, tc.path, tc.limit)
		if !tc.wantErr {
			want := data
			if tc.path == "l/empty" {
				want = nil
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("GetContent(%s, %d) = %d bytes, %v; want %d bytes", tc.path, tc.limit, len(got), err, len(want))
			}
			continue
		}
		var tl *storage.TooLargeError
		if !errors.As(err, &tl) {
			t.Fatalf("GetContent(%s, %d): err = %v (%T), want *storage.TooLargeError", tc.path, tc.limit, err, err)
		}
		if tl.Size != 1000 || tl.Limit != tc.limit || got != nil {
			t.Fatalf("GetContent(%s, %d): TooLargeError{Size: %d, Limit: %d}, %d bytes; want Size 1000, Limit %d, no bytes",
				tc.path, tc.limit, tl.Size, tl.Limit, len(got), tc.limit)
		}
	}
}

func (s *suite) testPutContentIf(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	const p = "tags/latest/current/link"
	version := func() string {
		t.Helper()
		fi, err := d.Stat(ctx, p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if fi.Version == "" {
			t.Fatal("Stat: empty Version for an object")
		}
		return fi.Version
	}

	// Create-only.
	if err := d.PutContentIf(ctx, p, []byte("v1"), ""); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := d.PutContentIf(ctx, p, []byte("v1-again"), ""); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("create over existing: err = %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, d, p); string(got) != "v1" {
		t.Fatalf("content = %q after refused create, want v1", got)
	}

	// Version match and mismatch.
	v1 := version()
	if v := version(); v != v1 {
		t.Fatalf("Version changed without a write: %q then %q", v1, v)
	}
	if err := d.PutContentIf(ctx, p, []byte("v2"), v1); err != nil {
		t.Fatalf("update at current version: %v", err)
	}
	v2 := version()
	if v2 == v1 {
		t.Fatalf("Version %q did not change after an update", v2)
	}
	if err := d.PutContentIf(ctx, p, []byte("stale"), v1); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("update at stale version: err = %v, want ErrPreconditionFailed", err)
	}
	if err := d.PutContentIf(ctx, p, []byte("bogus"), "not-a-version"); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("update at a made-up version: err = %v, want ErrPreconditionFailed", err)
	}
	if got := get(t, d, p); string(got) != "v2" {
		t.Fatalf("content = %q after refused updates, want v2", got)
	}
	// A plain PutContent is a new version too.
	put(t, d, p, []byte("v3"))
	if err := d.PutContentIf(ctx, p, []byte("stale"), v2); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("update at the version before a PutContent: err = %v, want ErrPreconditionFailed", err)
	}
	// A version of an object that does not exist never matches.
	if err := d.PutContentIf(ctx, "tags/other/current/link", []byte("x"), v2); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("update of a missing object: err = %v, want ErrPreconditionFailed", err)
	}
	if _, err := d.Stat(ctx, "tags/other/current/link"); !storage.IsNotFound(err) {
		t.Fatalf("refused update created the object: Stat err = %v", err)
	}
	// Once deleted, create-only works again.
	if err := d.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContentIf(ctx, p, []byte("v4"), ""); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
}

// Several writers race for one object: exactly one create wins, and in each
// round of compare-and-swap exactly one writer holding the current version
// wins; the winner's bytes are what is stored.
func (s *suite) testPutContentIfRace(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	const writers = 8
	const p = "race/current/link"
	race := func(round int, ifVersion string) {
		t.Helper()
		errs := make([]error, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = d.PutContentIf(ctx, p, []byte(fmt.Sprintf("round %d writer %d", round, i)), ifVersion)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrPreconditionFailed):
				t.Fatalf("round %d: writer %d: err = %v, want nil or ErrPreconditionFailed", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		if got, want := string(get(t, d, p)), fmt.Sprintf("round %d writer %d", round, winner); got != want {
			t.Fatalf("round %d: content %q, want the winner's %q", round, got, want)
		}
	}
	race(0, "")
	for round := 1; round <= 4; round++ {
		fi, err := d.Stat(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		race(round, fi.Version)
	}
}

func (s *suite) testReader(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	data := randomBytes(3, 1000)
	put(t, d, "r/obj", data)
	put(t, d, "r/dir/child", []byte("c"))
	for _, off := range []int64{0, 1, 500, 999, 1000, 1001, 1 << 40} {
		got := readAll(t, d, "r/obj", off)
		want := data[min(off, int64(len(data))):]
		if !bytes.Equal(got, want) {
			t.Fatalf("Reader at %d: %d bytes, want %d", off, len(got), len(want))
		}
	}
	if r, err := d.Reader(ctx, "r/obj", -1); err == nil {
		r.Close()
		t.Fatal("Reader at offset -1: no error")
	}
	for _, p := range []string{"r/missing", "r/dir", "r/ob"} {
		r, err := d.Reader(ctx, p, 0)
		if err == nil {
			r.Close()
		}
		wantNotFound(t, "Reader("+p+")", err)
	}
	// A reader opened before a replace keeps reading, or fails, but never
	// mixes two contents; read it in small steps to notice.
	r, err := d.Reader(ctx, "r/obj", 0)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 10)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(first, data[:10]) {
		t.Fatalf("first 10 bytes %x, want %x", first, data[:10])
	}
}

func (s *suite) testStat(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Minute)
	put(t, d, "s/a/b/obj", []byte("12345"))
	put(t, d, "s/a/objx", []byte("x"))
	fi, err := d.Stat(ctx, "s/a/b/obj")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Path != "s/a/b/obj" || fi.Size != 5 || fi.IsDir || fi.Version == "" ||
		fi.ModTime.Before(before) || fi.ModTime.After(time.Now().Add(time.Minute)) {
		t.Fatalf("Stat(object) = %+v, want path s/a/b/obj, size 5, an object, a version, modified now", fi)
	}
	for _, p := range []string{"s", "s/a", "s/a/b"} {
		fi, err := d.Stat(ctx, p)
		if err != nil {
			t.Fatalf("Stat(%s): %v", p, err)
		}
		if !fi.IsDir || fi.Path != p {
			t.Fatalf("Stat(%s) = %+v, want a directory", p, fi)
		}
	}
	// A name prefix is not a directory, and "missing" is missing.
	for _, p := range []string{"s/a/ob", "s/a/b/ob", "s/missing", "s/a/b/obj/under"} {
		_, err := d.Stat(ctx, p)
		wantNotFound(t, "Stat("+p+")", err)
	}
	root, err := d.Stat(ctx, "")
	if err != nil || !root.IsDir {
		t.Fatalf("Stat(root) = %+v, %v; want a directory", root, err)
	}
}

func (s *suite) testList(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	for _, p := range []string{"d/a", "d/b/x", "d/c", "d/b/y/z", "d/bb", "d/B", "d/a-1", "d/a.1", "dd/other"} {
		put(t, d, p, []byte(p))
	}
	// A write in progress is not a child.
	w, err := d.Writer(ctx, "d/pending", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("not yet")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		want []string
	}{
		{"d", []string{"B", "a", "a-1", "a.1", "b", "bb", "c"}},
		{"d/b", []string{"x", "y"}},
		{"d/b/y", []string{"z"}},
	}
	for _, tc := range tests {
		got, err := d.List(ctx, tc.dir)
		if err != nil {
			t.Fatalf("List(%s): %v", tc.dir, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("List(%s) = %q, want %q", tc.dir, got, tc.want)
		}
	}
	root, err := d.List(ctx, "")
	if err != nil || !slices.Equal(root, []string{"d", "dd"}) {
		t.Fatalf("List(root) = %q, %v; want [d dd]", root, err)
	}
	for _, p := range []string{"missing", "d/b/q", "d/a", "d/b/x"} {
		_, err := d.List(ctx, p)
		wantNotFound(t, "List("+p+")", err)
	}
	// Listing follows deletes.
	if err := d.Delete(ctx, "d/b"); err != nil {
		t.Fatal(err)
	}
	got, err := d.List(ctx, "d")
	if err != nil || !slices.Equal(got, []string{"B", "a", "a-1", "a.1", "bb", "c"}) {
		t.Fatalf("List(d) after Delete(d/b) = %q, %v", got, err)
	}
}

func (s *suite) testMove(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	put(t, d, "m/src", []byte("moved"))
	if err := d.Move(ctx, "m/src", "m/new/deep/dst"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, "m/new/deep/dst"); string(got) != "moved" {
		t.Fatalf("dst = %q, want moved", got)
	}
	_, err := d.Stat(ctx, "m/src")
	wantNotFound(t, "Stat(src) after Move", err)

	// Replacing an existing destination.
	put(t, d, "m/src2", []byte("second"))
	put(t, d, "m/existing", []byte("old content that is longer"))
	if err := d.Move(ctx, "m/src2", "m/existing"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, "m/existing"); string(got) != "second" {
		t.Fatalf("replaced dst = %q, want second", got)
	}
	_, err = d.Stat(ctx, "m/src2")
	wantNotFound(t, "Stat(src2) after Move", err)

	// A missing source changes nothing.
	wantNotFound(t, "Move of a missing source", d.Move(ctx, "m/missing", "m/existing"))
	if got := get(t, d, "m/existing"); string(got) != "second" {
		t.Fatalf("dst = %q after a failed Move, want second", got)
	}
}

func (s *suite) testDelete(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	for _, p := range []string{"x/a", "x/ab", "x/p/one", "x/p/sub/two", "x/pp/keep", "x/p2"} {
		put(t, d, p, []byte(p))
	}
	if err := d.Delete(ctx, "x/a"); err != nil {
		t.Fatal(err)
	}
	_, err := d.Stat(ctx, "x/a")
	wantNotFound(t, "Stat after Delete", err)
	if got := get(t, d, "x/ab"); string(got) != "x/ab" {
		t.Fatalf("sibling x/ab = %q after Delete(x/a)", got)
	}

	if err := d.Delete(ctx, "x/p"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"x/p", "x/p/one", "x/p/sub", "x/p/sub/two"} {
		_, err := d.Stat(ctx, p)
		wantNotFound(t, "Stat("+p+") after Delete(x/p)", err)
	}
	for _, p := range []string{"x/pp/keep", "x/p2"} {
		if got := get(t, d, p); string(got) != p {
			t.Fatalf("%s = %q after Delete(x/p), want it kept", p, got)
		}
	}
	got, err := d.List(ctx, "x")
	if err != nil || !slices.Equal(got, []string{"ab", "p2", "pp"}) {
		t.Fatalf("List(x) = %q, %v; want [ab p2 pp]", got, err)
	}
	wantNotFound(t, "Delete of a missing path", d.Delete(ctx, "x/missing"))
	wantNotFound(t, "Delete twice", d.Delete(ctx, "x/a"))

	// Deleting a directory also drops the writes in progress below it.
	w, err := d.Writer(ctx, "x/up/data", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	put(t, d, "x/up/state", []byte("s"))
	if err := d.Delete(ctx, "x/up"); err != nil {
		t.Fatal(err)
	}
	_, err = d.Writer(ctx, "x/up/data", 7)
	var oe *storage.InvalidOffsetError
	if !errors.As(err, &oe) || oe.Have != 0 {
		t.Fatalf("resume a write below a deleted directory: err = %v, want *InvalidOffsetError with Have 0", err)
	}
}

// failingReader yields data, then fails instead of ending: what a
// verifying reader does when the digest does not match.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func (s *suite) testPutStream(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	sp := d.(StreamPutter)
	data := randomBytes(21, s.cfg.LargeSize)
	tests := []struct {
		name string
		path string
		data []byte
	}{
		{"empty", "ps/empty", nil},
		{"small", "ps/small", []byte("small")},
		{"large", "ps/large/data", data},
	}
	for _, tc := range tests {
		n, err := sp.PutStream(ctx, tc.path, bytes.NewReader(tc.data))
		if err != nil || n != int64(len(tc.data)) {
			t.Fatalf("PutStream(%s) = %d, %v; want %d bytes", tc.path, n, err, len(tc.data))
		}
		wantContent(t, d, tc.path, tc.data)
	}
	// Replacing, through a reader that hides WriterTo.
	small := []byte("replaced")
	if _, err := sp.PutStream(ctx, "ps/large/data", io.MultiReader(bytes.NewReader(small))); err != nil {
		t.Fatal(err)
	}
	wantContent(t, d, "ps/large/data", small)

	// A reader that fails at the end leaves nothing new, and the old
	// object as it was.
	errDigest := errors.New("digest mismatch")
	for _, p := range []string{"ps/failed", "ps/small"} {
		_, err := sp.PutStream(ctx, p, &failingReader{r: bytes.NewReader(data), err: errDigest})
		if !errors.Is(err, errDigest) {
			t.Fatalf("PutStream(%s) of a failing reader: err = %v, want the reader's error", p, err)
		}
	}
	_, err := d.Stat(ctx, "ps/failed")
	wantNotFound(t, "Stat after a failed PutStream", err)
	wantContent(t, d, "ps/small", []byte("small"))

	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sp.PutStream(cctx, "ps/cancelled", bytes.NewReader(small)); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutStream with a cancelled context: err = %v, want context.Canceled", err)
	}
	_, err = d.Stat(ctx, "ps/cancelled")
	wantNotFound(t, "Stat after a cancelled PutStream", err)

	// A resumable write at the same path is not disturbed.
	write(t, d, "ps/shared", 0, []byte("resumable"))
	if _, err := sp.PutStream(ctx, "ps/shared", bytes.NewReader(small)); err != nil {
		t.Fatal(err)
	}
	wantContent(t, d, "ps/shared", small)
	write(t, d, "ps/shared", 9, []byte(" write"))
	commit(t, d, "ps/shared", 15)
	wantContent(t, d, "ps/shared", []byte("resumable write"))

	for _, p := range []string{"", "../x", "/abs", "a/.hidden"} {
		_, err := sp.PutStream(ctx, p, bytes.NewReader(small))
		wantInvalidPath(t, "PutStream("+p+")", err)
	}
	got, err := d.List(ctx, "ps")
	if err != nil || !slices.Equal(got, []string{"empty", "large", "shared", "small"}) {
		t.Fatalf("List(ps) = %q, %v; want [empty large shared small]", got, err)
	}
}

// write runs one writer session: open at offset, write data in chunks of the
// given sizes (cycling), and Close.
func write(t *testing.T, d storage.Driver, p string, offset int64, data []byte, chunks ...int) storage.FileWriter {
	t.Helper()
	w, err := d.Writer(ctxFor(t), p, offset)
	if err != nil {
		t.Fatalf("Writer(%q, %d): %v", p, offset, err)
	}
	if w.Size() != offset {
		t.Fatalf("Writer(%q, %d).Size() = %d", p, offset, w.Size())
	}
	if len(chunks) == 0 {
		chunks = []int{len(data) + 1}
	}
	for i, off := 0, 0; off < len(data); i++ {
		n := min(chunks[i%len(chunks)], len(data)-off)
		m, err := w.Write(data[off : off+n])
		if err != nil || m != n {
			t.Fatalf("Write(%d bytes at %d) = %d, %v", n, offset+int64(off), m, err)
		}
		off += n
		if w.Size() != offset+int64(off) {
			t.Fatalf("Size() = %d after writing up to %d", w.Size(), offset+int64(off))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if w.Size() != offset+int64(len(data)) {
		t.Fatalf("Size() after Close = %d, want %d", w.Size(), offset+int64(len(data)))
	}
	return w
}

func commit(t *testing.T, d storage.Driver, p string, offset int64) {
	t.Helper()
	w, err := d.Writer(ctxFor(t), p, offset)
	if err != nil {
		t.Fatalf("Writer(%q, %d) to commit: %v", p, offset, err)
	}
	if err := w.Commit(ctxFor(t)); err != nil {
		t.Fatalf("Commit(%q): %v", p, err)
	}
}

func (s *suite) testWriterCommit(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	const p = "w/obj"
	w, err := d.Writer(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"hello", ", ", "world"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if w.Size() != 12 {
		t.Fatalf("Size() = %d, want 12", w.Size())
	}
	// Nothing is visible before Commit, also after Close.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Stat(ctx, p)
	wantNotFound(t, "Stat before Commit", err)
	_, err = d.GetContent(ctx, p, 100)
	wantNotFound(t, "GetContent before Commit", err)
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close: no error")
	}
	// Commit on the closed writer.
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantContent(t, d, p, []byte("hello, world"))

	// A write over an existing object leaves the old content in place
	// until Commit; Commit without Close works.
	w, err = d.Writer(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, p); string(got) != "hello, world" {
		t.Fatalf("before Commit: %q, want the old content", got)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantContent(t, d, p, []byte("second"))

	// An empty write commits an empty object.
	w, err = d.Writer(ctx, "w/empty", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantContent(t, d, "w/empty", nil)

	// A committed write cannot be resumed: it is finished.
	_, err = d.Writer(ctx, "w/empty", 1)
	var oe *storage.InvalidOffsetError
	if !errors.As(err, &oe) {
		t.Fatalf("resume a committed write: err = %v, want *InvalidOffsetError", err)
	}
}

func (s *suite) testWriterResume(t *testing.T, d storage.Driver) {
	const p = "w/resumed"
	a, b, c := []byte("first session;"), []byte("second session;"), []byte("third")
	write(t, d, p, 0, a, 3)
	// Another process continues at Size().
	d2 := s.cfg.Reopen(t, d)
	write(t, d2, p, int64(len(a)), b, 5, 1)
	_, err := d.Stat(ctxFor(t), p)
	wantNotFound(t, "Stat of a resumed write before Commit", err)
	// Resuming below the durable size discards the bytes past it (the
	// caller never recorded them).
	keep := int64(len(a) + 6)
	write(t, d, p, keep, c)
	commit(t, d2, p, keep+int64(len(c)))
	want := append(append(append([]byte{}, a...), b[:6]...), c...)
	wantContent(t, d, p, want)

	// Writer(p, 0) over a write in progress starts afresh.
	write(t, d, "w/restart", 0, []byte("old bytes that go away"))
	write(t, d, "w/restart", 0, []byte("new"))
	commit(t, d, "w/restart", 3)
	wantContent(t, d, "w/restart", []byte("new"))
}

func (s *suite) testWriterInvalidOffset(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	const p = "w/offset"
	write(t, d, p, 0, []byte("0123456789"))
	tests := []struct {
		path   string
		offset int64
		have   int64
	}{
		{p, 11, 10},
		{p, 1 << 40, 10},
		{"w/never-started", 1, 0},
	}
	for _, tc := range tests {
		w, err := d.Writer(ctx, tc.path, tc.offset)
		var oe *storage.InvalidOffsetError
		if !errors.As(err, &oe) {
			if err == nil {
				_ = w.Cancel(ctx)
			}
			t.Fatalf("Writer(%s, %d): err = %v (%T), want *storage.InvalidOffsetError", tc.path, tc.offset, err, err)
		}
		if oe.Offset != tc.offset || oe.Have != tc.have {
			t.Fatalf("Writer(%s, %d): InvalidOffsetError{Offset: %d, Have: %d}, want Offset %d, Have %d",
				tc.path, tc.offset, oe.Offset, oe.Have, tc.offset, tc.have)
		}
	}
	if w, err := d.Writer(ctx, p, -1); err == nil {
		_ = w.Cancel(ctx)
		t.Fatal("Writer at offset -1: no error")
	}
	// A refused resume destroyed nothing.
	write(t, d, p, 10, []byte("ab"))
	commit(t, d, p, 12)
	wantContent(t, d, p, []byte("0123456789ab"))
}

func (s *suite) testWriterCancel(t *testing.T, d storage.Driver) {
	ctx := ctxFor(t)
	var oe *storage.InvalidOffsetError
	// Cancel of a closed, resumed write.
	write(t, d, "w/cancel/a", 0, randomBytes(4, 1000))
	w, err := s.cfg.Reopen(t, d).Writer(ctx, "w/cancel/a", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Writer(ctx, "w/cancel/a", 1); !errors.As(err, &oe) || oe.Have != 0 {
		t.Fatalf("resume after Cancel: err = %v, want *InvalidOffsetError with Have 0", err)
	}
	_, err = d.Stat(ctx, "w/cancel/a")
	wantNotFound(t, "Stat after Cancel", err)

	// Cancel of an open write, and of a write over an existing object,
	// which stays as it was.
	put(t, d, "w/cancel/b", []byte("keep me"))
	w, err = d.Writer(ctx, "w/cancel/b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(5, 10000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, "w/cancel/b"); string(got) != "keep me" {
		t.Fatalf("object = %q after a cancelled write over it, want it unchanged", got)
	}
	if _, err := d.Writer(ctx, "w/cancel/b", 1); !errors.As(err, &oe) || oe.Have != 0 {
		t.Fatalf("resume after Cancel: err = %v, want *InvalidOffsetError with Have 0", err)
	}
	got, err := d.List(ctx, "w/cancel")
	if err != nil || !slices.Equal(got, []string{"b"}) {
		t.Fatalf("List(w/cancel) = %q, %v; want [b]", got, err)
	}
}

// Multi-MiB writes in odd-sized chunks over several sessions, each opened
// by a new driver, verified by sha256 and at offsets.
func (s *suite) testWriterLarge(t *testing.T, d storage.Driver) {
	const p = "blobs/large/data"
	data := randomBytes(6, s.cfg.LargeSize)
	cuts := []int{0, len(data) / 7, len(data)/2 + 3, len(data)}
	chunks := [][]int{{4093}, {1<<20 + 17, 333}, {3<<20 - 5, 65537}}
	for i := range 3 {
		write(t, s.cfg.Reopen(t, d), p, int64(cuts[i]), data[cuts[i]:cuts[i+1]], chunks[i]...)
	}
	commit(t, s.cfg.Reopen(t, d), p, int64(len(data)))
	wantContent(t, d, p, data)
	for _, off := range []int64{1, 5<<20 - 1, 5 << 20, int64(len(data)) - 3} {
		if got := readAll(t, d, p, off); sum(got) != sum(data[off:]) {
			t.Fatalf("Reader at %d: %d bytes, want %d bytes matching", off, len(got), len(data)-int(off))
		}
	}
}

// The layout records an upload's offset after the driver's Close; a crash
// between the two resumes the write at the previous offset, after more than
// a part's worth of bytes that must be dropped.
func (s *suite) testWriterResumeInsideLarge(t *testing.T, d storage.Driver) {
	const p = "blobs/crash/data"
	data := randomBytes(7, s.cfg.LargeSize)
	first := len(data)/2 - 1<<20 + 1
	write(t, d, p, 0, data[:first], 1<<20+1)
	// This session's bytes were made durable but never recorded.
	write(t, d, p, int64(first), randomBytes(8, len(data)/2), 777777)
	d2 := s.cfg.Reopen(t, d)
	write(t, d2, p, int64(first), data[first:], 1<<20-1)
	commit(t, d2, p, int64(len(data)))
	wantContent(t, d, p, data)
}

func (s *suite) testConcurrentWriters(t *testing.T, d storage.Driver) {
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			p := fmt.Sprintf("par/%d/data", i)
			data := randomBytes(uint64(100+i), 300<<10+i)
			w, err := d.Writer(ctx, p, 0)
			if err != nil {
				errs <- err
				return
			}
			for off := 0; off < len(data); off += 10007 {
				if _, err := w.Write(data[off:min(off+10007, len(data))]); err != nil {
					errs <- err
					return
				}
			}
			if err := w.Commit(ctx); err != nil {
				errs <- err
				return
			}
			if err := d.PutContent(ctx, fmt.Sprintf("par/%d/link", i), []byte(sum(data))); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		data := randomBytes(uint64(100+i), 300<<10+i)
		wantContent(t, d, fmt.Sprintf("par/%d/data", i), data)
		if got := get(t, d, fmt.Sprintf("par/%d/link", i)); string(got) != sum(data) {
			t.Fatalf("par/%d/link = %q", i, got)
		}
	}
}

// A cancelled context stops every call with an error that says so, and
// leaves nothing half-done.
func (s *suite) testCancelledContext(t *testing.T, d storage.Driver) {
	put(t, d, "cc/obj", []byte("before"))
	write(t, d, "cc/pending", 0, []byte("pending"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := []struct {
		name string
		fn   func() error
	}{
		{"GetContent", func() error { _, err := d.GetContent(ctx, "cc/obj", 100); return err }},
		{"PutContent", func() error { return d.PutContent(ctx, "cc/obj", []byte("after")) }},
		{"PutContent new", func() error { return d.PutContent(ctx, "cc/new", []byte("new")) }},
		{"PutContentIf", func() error { return d.PutContentIf(ctx, "cc/new2", []byte("new"), "") }},
		{"Reader", func() error {
			r, err := d.Reader(ctx, "cc/obj", 0)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		}},
		{"Stat", func() error { _, err := d.Stat(ctx, "cc/obj"); return err }},
		{"List", func() error { _, err := d.List(ctx, "cc"); return err }},
		{"Move", func() error { return d.Move(ctx, "cc/obj", "cc/moved") }},
		{"Delete", func() error { return d.Delete(ctx, "cc/obj") }},
		{"Writer", func() error {
			w, err := d.Writer(ctx, "cc/w", 0)
			if err != nil {
				return err
			}
			defer w.Cancel(context.Background())
			return w.Commit(ctx)
		}},
		{"Commit", func() error {
			w, err := d.Writer(context.Background(), "cc/pending", 7)
			if err != nil {
				t.Fatal(err)
			}
			return w.Commit(ctx)
		}},
	}
	for _, c := range calls {
		if err := c.fn(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", c.name, err)
		}
	}
	if got := get(t, d, "cc/obj"); string(got) != "before" {
		t.Fatalf("cc/obj = %q, want it untouched", got)
	}
	got, err := d.List(ctxFor(t), "cc")
	if err != nil || !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("List(cc) = %q, %v; want only [obj]", got, err)
	}
	// The pending write survived the cancelled Commit.
	commit(t, d, "cc/pending", 7)
	wantContent(t, d, "cc/pending", []byte("pending"))
}
