package storage_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// listCounter counts the listings of tag directories under a driver.
type listCounter struct {
	storage.Driver
	tagLists atomic.Int64
}

func (c *listCounter) List(ctx context.Context, p string) ([]string, error) {
	if strings.Contains(p, "/_manifests/tags") {
		c.tagLists.Add(1)
	}
	return c.Driver.List(ctx, p)
}

// After its first view of a repository a Store reads the tag index, not
// the tag directories, and still sees every move at once; every
// TagIndexReconcile it lists them again.
func TestTagDigestsReadsTheIndex(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	d := &listCounter{Driver: s.Driver()}
	w, r := storage.NewStore(d), storage.NewStore(d)
	r.TagIndexReconcile = -1
	for i := 0; i < 20; i++ {
		if _, err := w.MoveTag(ctx, "r/m", fmt.Sprintf("v%d", i), digest.FromString(fmt.Sprint(i)), "", "u"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.TagDigests(ctx, "r/m", 4); err != nil {
		t.Fatal(err)
	}
	d.tagLists.Store(0)
	for i := 0; i < 3; i++ {
		moved := digest.FromString(fmt.Sprint("moved", i))
		if _, err := w.MoveTag(ctx, "r/m", "v3", moved, "", "u"); err != nil {
			t.Fatal(err)
		}
		got, err := r.TagDigests(ctx, "r/m", 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 20 || got["v3"] != moved {
			t.Fatalf("view %d: %d tags, v3=%s, want 20 and %s", i, len(got), got["v3"], moved)
		}
	}
	// MoveTag reads the tag's own link; the views read none.
	if n := d.tagLists.Load(); n != 0 {
		t.Fatalf("%d listings of tag directories after the first view, want 0", n)
	}
	r.TagIndexReconcile = 1 // due at every call
	if _, err := r.TagDigests(ctx, "r/m", 4); err != nil {
		t.Fatal(err)
	}
	if d.tagLists.Load() == 0 {
		t.Fatal("a due reconcile listed no tag directory")
	}
}

// A tag table larger than the index may hold gets an overflow index: views
// list the links, and stay right through moves and deletes.
func TestTagIndexOverflow(t *testing.T) {
	defer storage.SetTagIndexLimit(600)()
	ctx := context.Background()
	s, _ := newStore(t)
	r := storage.NewStore(s.Driver())
	r.TagIndexReconcile = -1
	want := map[string]digest.Digest{}
	for i := 0; i < 12; i++ {
		tag := fmt.Sprintf("v%d", i)
		want[tag] = digest.FromString(tag)
		if _, err := s.MoveTag(ctx, "r/m", tag, want[tag], "", "u"); err != nil {
			t.Fatal(err)
		}
		got, err := r.TagDigests(ctx, "r/m", 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || got[tag] != want[tag] {
			t.Fatalf("after %d moves: %v", i+1, got)
		}
	}
	b, err := s.Driver().GetContent(ctx, "repositories/r/m/_manifests/tagindex", 1<<20)
	if err != nil || !strings.Contains(string(b), `"overflow":true`) {
		t.Fatalf("index %q (%v), want an overflow index", b, err)
	}
	for i := 0; i < 11; i++ {
		tag := fmt.Sprintf("v%d", i)
		if err := s.DeleteTag(ctx, "r/m", tag, "u"); err != nil {
			t.Fatal(err)
		}
		delete(want, tag)
	}
	got, err := r.TagDigests(ctx, "r/m", 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["v11"] != want["v11"] {
		t.Fatalf("after the deletes: %v, want %v", got, want)
	}
}
