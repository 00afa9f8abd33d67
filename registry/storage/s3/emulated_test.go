package s3

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// versitygw honours conditional PUTs; on a store that does not, PutContentIf
// falls back to check-then-write, which keeps the single-writer semantics.
func TestConditionalWritesProbeAndFallback(t *testing.T) {
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := New(ctx, Config{Bucket: srv.Bucket, Prefix: "p", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if !d.ConditionalWrites() {
		t.Fatal("versitygw v1.8.0 honours If-Match/If-None-Match, but the probe says it does not")
	}
	// The probe cleans up after itself.
	if got, err := d.listAll(ctx, d.base); err != nil || len(got) != 0 {
		t.Fatalf("after New: %d objects under the prefix, %v; want none", len(got), err)
	}

	d.conditional = false
	const p = "tags/t/current/link"
	if err := d.PutContentIf(ctx, p, []byte("v1"), ""); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContentIf(ctx, p, []byte("x"), ""); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("create over existing: %v", err)
	}
	fi, err := d.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutContentIf(ctx, p, []byte("v2"), fi.Version); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContentIf(ctx, p, []byte("x"), fi.Version); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("stale version: %v", err)
	}
	if err := d.PutContentIf(ctx, "tags/none/current/link", []byte("x"), fi.Version); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("version of a missing object: %v", err)
	}
	got, err := d.GetContent(ctx, p, 10)
	if err != nil || string(got) != "v2" {
		t.Fatalf("content %q, %v; want v2", got, err)
	}
}

// On a store that ignores conditional PUTs the Store keeps no tag index:
// two writers of different tags could both "win" its compare-and-swap and
// one tag would be lost from it. Views list the links instead, and see
// every move.
func TestNoTagIndexWithoutConditionalWrites(t *testing.T) {
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := New(ctx, Config{Bucket: srv.Bucket, Prefix: "noidx", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	d.conditional = false
	st := storage.NewStore(d)
	a, b := digest.FromString("a"), digest.FromString("b")
	for _, tag := range []string{"v1", "v2"} {
		if _, err := st.MoveTag(ctx, "team/m", tag, a, "", "u"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ { // the first view and a later one
		if _, err := st.MoveTag(ctx, "team/m", "v2", b, "", "u"); err != nil {
			t.Fatal(err)
		}
		got, err := st.TagDigests(ctx, "team/m", 4)
		if err != nil || len(got) != 2 || got["v1"] != a || got["v2"] != b {
			t.Fatalf("view %d: %v, %v", i, got, err)
		}
		if err := st.DeleteTag(ctx, "team/m", "v2", "u"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"repositories/team/m/_manifests/tagindex", "repositories/team/m/_manifests/tagmoves"} {
		if _, err := d.Stat(ctx, p); !storage.IsNotFound(err) {
			t.Fatalf("%s: %v, want none", p, err)
		}
	}
}
