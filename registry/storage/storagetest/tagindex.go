package storagetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// The tag index's objects, as paths.go lays them out.
const (
	indexRepo   = "idx/model"
	indexPath   = "repositories/" + indexRepo + "/_manifests/tagindex"
	tagMovesDir = "repositories/" + indexRepo + "/_manifests/tagmoves"
)

func tagLinkPath(tag string) string {
	return "repositories/" + indexRepo + "/_manifests/tags/" + tag + "/current/link"
}

// TagIndex checks the tag index the Store keeps beside the tag links
// (storage/tagindex.go) on cfg's driver: it follows moves, deletes and
// rollbacks; two Stores on one store (two registries sharing a bucket)
// moving tags at once lose none; a missing, corrupt, older-format or stale
// index is repaired; and a move whose writer died between its link and its
// index update is seen at once and folded in later.
func TagIndex(t *testing.T, cfg Config) {
	if cfg.Reopen == nil {
		cfg.Reopen = func(_ *testing.T, d storage.Driver) storage.Driver { return d }
	}
	t.Run("MoveDeleteRollback", func(t *testing.T) { testIndexMoves(t, cfg) })
	t.Run("ConcurrentStores", func(t *testing.T) { testIndexConcurrent(t, cfg) })
	t.Run("Repair", func(t *testing.T) { testIndexRepair(t, cfg) })
	t.Run("DeadWriter", func(t *testing.T) { testIndexDeadWriter(t, cfg) })
}

// viewer returns a Store that has done its first, listing, TagDigests of
// the repository, so that later calls read the index.
func viewer(t *testing.T, d storage.Driver) *storage.Store {
	t.Helper()
	s := storage.NewStore(d)
	s.TagIndexReconcile = -1
	if _, err := s.TagDigests(ctxFor(t), indexRepo, 4); err != nil {
		t.Fatalf("first TagDigests: %v", err)
	}
	return s
}

// indexTags reads the index object itself.
func indexTags(t *testing.T, d storage.Driver) map[string]digest.Digest {
	t.Helper()
	b, err := d.GetContent(ctxFor(t), indexPath, 64<<20)
	if err != nil {
		t.Fatalf("read the tag index: %v", err)
	}
	var idx struct {
		Format int                      `json:"format"`
		Tags   map[string]digest.Digest `json:"tags"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || idx.Format != 1 || idx.Tags == nil {
		t.Fatalf("tag index %q: %v", b, err)
	}
	return idx.Tags
}

func wantTags(t *testing.T, what string, got, want map[string]digest.Digest) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tags %v, want %d %v", what, len(got), got, len(want), want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %s=%s, want %s (all: %v)", what, k, got[k], v, got)
		}
	}
}

// wantConsistent checks the links, the index object, and the view of r
// all equal want, and that no move marker is left.
func wantConsistent(t *testing.T, what string, d storage.Driver, r *storage.Store, want map[string]digest.Digest) {
	t.Helper()
	listed, err := storage.NewStore(d).ListTagDigests(ctxFor(t), indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, what+": links", listed, want)
	wantTags(t, what+": index object", indexTags(t, d), want)
	got, err := r.TagDigests(ctxFor(t), indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, what+": TagDigests", got, want)
	if left, err := d.List(ctxFor(t), tagMovesDir); err == nil && len(left) > 0 {
		t.Fatalf("%s: move markers left: %v", what, left)
	} else if err != nil && !storage.IsNotFound(err) {
		t.Fatal(err)
	}
}

func testIndexMoves(t *testing.T, cfg Config) {
	d := cfg.New(t)
	w := storage.NewStore(d)
	ctx := ctxFor(t)
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	if _, err := w.MoveTag(ctx, indexRepo, "a", d1, "", "u"); err != nil {
		t.Fatal(err)
	}
	r := viewer(t, cfg.Reopen(t, d))
	wantConsistent(t, "created", d, r, map[string]digest.Digest{"a": d1})
	steps := []struct {
		what string
		do   func() error
		want map[string]digest.Digest
	}{
		{"second tag", func() error { _, err := w.MoveTag(ctx, indexRepo, "b", d1, "", "u"); return err }, map[string]digest.Digest{"a": d1, "b": d1}},
		{"moved", func() error { _, err := w.MoveTag(ctx, indexRepo, "a", d2, "", "u"); return err }, map[string]digest.Digest{"a": d2, "b": d1}},
		{"rolled back", func() error { _, err := w.MoveTag(ctx, indexRepo, "a", d1, d2, "u"); return err }, map[string]digest.Digest{"a": d1, "b": d1}},
		{"refused rollback", func() error {
			if _, err := w.MoveTag(ctx, indexRepo, "a", d2, d2, "u"); err == nil {
				return fmt.Errorf("a rollback from a digest the tag does not hold succeeded")
			}
			return nil
		}, map[string]digest.Digest{"a": d1, "b": d1}},
		{"moved to the same", func() error {
			before, err := d.Stat(ctx, indexPath)
			if err != nil {
				return err
			}
			if _, err := w.MoveTag(ctx, indexRepo, "b", d1, "", "u"); err != nil {
				return err
			}
			if after, err := d.Stat(ctx, indexPath); err != nil || after.Version != before.Version {
				return fmt.Errorf("a move to the digest the tag holds wrote the index (version %q, then %q, %v)", before.Version, after.Version, err)
			}
			return nil
		}, map[string]digest.Digest{"a": d1, "b": d1}},
		{"deleted", func() error { return w.DeleteTag(ctx, indexRepo, "b", "u") }, map[string]digest.Digest{"a": d1}},
		{"recreated", func() error { _, err := w.MoveTag(ctx, indexRepo, "b", d2, "", "u"); return err }, map[string]digest.Digest{"a": d1, "b": d2}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		wantConsistent(t, st.what, d, r, st.want)
	}
}

func testIndexConcurrent(t *testing.T, cfg Config) {
	d := cfg.New(t)
	ctx := ctxFor(t)
	stores := []*storage.Store{storage.NewStore(d), storage.NewStore(cfg.Reopen(t, d))}
	const perStore = 12
	want := map[string]digest.Digest{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, s := range stores {
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < perStore; k += 2 {
					// Tags of their own, and one that every writer moves.
					tag := fmt.Sprintf("s%d-t%02d", i, k)
					dg := digest.FromString(tag)
					if _, err := s.MoveTag(ctx, indexRepo, tag, dg, "", "u"); err != nil {
						t.Errorf("move %s: %v", tag, err)
						return
					}
					if _, err := s.MoveTag(ctx, indexRepo, "shared", dg, "", "u"); err != nil {
						t.Errorf("move shared: %v", err)
						return
					}
					mu.Lock()
					want[tag] = dg
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	cur, err := stores[0].ResolveTag(ctx, indexRepo, "shared")
	if err != nil {
		t.Fatal(err)
	}
	want["shared"] = cur
	wantConsistent(t, "after concurrent moves", d, viewer(t, d), want)
}

func testIndexRepair(t *testing.T, cfg Config) {
	d := cfg.New(t)
	w := storage.NewStore(d)
	ctx := ctxFor(t)
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	for _, tag := range []string{"a", "b", "c"} {
		if _, err := w.MoveTag(ctx, indexRepo, tag, d1, "", "u"); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]digest.Digest{"a": d1, "b": d1, "c": d1}
	r := viewer(t, d)
	for _, tc := range []struct {
		what  string
		index []byte // nil: delete it
	}{
		{"missing", nil},
		{"corrupt", []byte("{not json")},
		{"empty", []byte("")},
		{"older format", []byte(`{"tags":{"a":"` + string(d2) + `"}}`)},
		{"newer format", []byte(`{"format":2,"tags":{"a":"` + string(d2) + `"}}`)},
		{"bad entry", []byte(`{"format":1,"tags":{"a":"sha256:xyz"}}`)},
		{"no table", []byte(`{"format":1}`)},
	} {
		var err error
		if tc.index == nil {
			err = d.Delete(ctx, indexPath)
		} else {
			err = d.PutContent(ctx, indexPath, tc.index)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.TagDigests(ctx, indexRepo, 4)
		if err != nil {
			t.Fatalf("%s index: %v", tc.what, err)
		}
		wantTags(t, tc.what+" index: TagDigests", got, want)
		wantTags(t, tc.what+" index: rewritten", indexTags(t, d), want)
	}
	// A bad index that a writer finds is rebuilt by it, with its move.
	if err := d.PutContent(ctx, indexPath, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.MoveTag(ctx, indexRepo, "b", d2, "", "u"); err != nil {
		t.Fatal(err)
	}
	want["b"] = d2
	wantConsistent(t, "writer after a corrupt index", d, r, want)

	// A well-formed index that is wrong (written by a registry that does
	// not keep it, or by hand) is seen by a Store until it reconciles:
	// the first view in a process, then every TagIndexReconcile.
	if err := d.PutContent(ctx, indexPath, []byte(`{"format":1,"tags":{"a":"`+string(d2)+`","b":"`+string(d2)+`","c":"`+string(d1)+`","zz":"`+string(d2)+`"}}`)); err != nil {
		t.Fatal(err)
	}
	got, err := r.TagDigests(ctx, indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != d2 || len(got) != 4 {
		t.Fatalf("a Store that has reconciled reads the index: got %v", got)
	}
	fresh := storage.NewStore(cfg.Reopen(t, d))
	fresh.TagIndexReconcile = time.Hour
	got, err = fresh.TagDigests(ctx, indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, "stale index, first view", got, want)
	wantConsistent(t, "stale index repaired", d, r, want)
}

func testIndexDeadWriter(t *testing.T, cfg Config) {
	d := cfg.New(t)
	w := storage.NewStore(d)
	ctx := ctxFor(t)
	d1, d2, d3 := digest.FromString("one"), digest.FromString("two"), digest.FromString("three")
	for _, tag := range []string{"a", "b", "c"} {
		if _, err := w.MoveTag(ctx, indexRepo, tag, d1, "", "u"); err != nil {
			t.Fatal(err)
		}
	}
	r := viewer(t, d)
	// What writers that died leave: a marker and a moved link (a), a
	// marker and a deleted link (b), a marker alone (c: died before its
	// link write). a's and b's markers are old enough to be folded in, c's
	// is recent: its writer may still be at work.
	old := time.Now().Add(-time.Hour).UnixNano()
	put(t, d, tagMovesDir+fmt.Sprintf("/%020d-0123abcd-a", old), []byte("a"))
	put(t, d, tagLinkPath("a"), []byte(d2))
	put(t, d, tagMovesDir+fmt.Sprintf("/%020d-0123abce-b", old), []byte("b"))
	if err := d.Delete(ctx, tagLinkPath("b")); err != nil {
		t.Fatal(err)
	}
	recent := tagMovesDir + fmt.Sprintf("/%020d-0123abcf-c", time.Now().UnixNano())
	put(t, d, recent, []byte("c"))
	want := map[string]digest.Digest{"a": d2, "c": d1}
	got, err := r.TagDigests(ctx, indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, "moves of dead writers", got, want)
	wantTags(t, "index after folding the old markers", indexTags(t, d), want)
	left, err := d.List(ctx, tagMovesDir)
	if err != nil || len(left) != 1 || tagMovesDir+"/"+left[0] != recent {
		t.Fatalf("markers left: %v, %v; want only the recent one", left, err)
	}
	// The recent marker's tag is read from its link on every view.
	put(t, d, tagLinkPath("c"), []byte(d3))
	want["c"] = d3
	got, err = r.TagDigests(ctx, indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, "tag with a recent marker", got, want)
	// The next move of any tag brings the index up to its own tag only;
	// c's marker stays until it is old, and keeps c right meanwhile.
	if _, err := w.MoveTag(ctx, indexRepo, "a", d1, "", "u"); err != nil {
		t.Fatal(err)
	}
	want["a"] = d1
	got, err = r.TagDigests(ctx, indexRepo, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantTags(t, "after a later move", got, want)
}

// BenchMoveTag times MoveTag of one tag back and forth in a repository of
// tags tags on d, which keeps the tag index: the cost of a tag push beyond
// its manifest.
func BenchMoveTag(b *testing.B, d storage.Driver, tags int) {
	ctx := context.Background()
	s := storage.NewStore(d)
	for i := 0; i < tags; i++ {
		if _, err := s.MoveTag(ctx, indexRepo, fmt.Sprintf("v%04d", i), digest.FromString(fmt.Sprint(i)), "", "u"); err != nil {
			b.Fatal(err)
		}
	}
	a, c := digest.FromString("a"), digest.FromString("c")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		to := a
		if i%2 == 1 {
			to = c
		}
		if _, err := s.MoveTag(ctx, indexRepo, "v0000", to, "", "u"); err != nil {
			b.Fatal(err)
		}
	}
}
