//go:build !windows

package s3_test

import (
	"context"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

// countingDriver counts the object reads under a driver that walks.
type countingDriver struct {
	*s3.Driver
	gets atomic.Int64
}

func (c *countingDriver) GetContent(ctx context.Context, p string, limit int64) ([]byte, error) {
	c.gets.Add(1)
	return c.Driver.GetContent(ctx, p, limit)
}

// ListTagDigests over S3 lists the tags with their versions and reads only the
// links that changed: a repeated view costs no GET, and a moved tag is
// seen at once (its ETag changed with its content).
func TestTagDigestsReadsOnlyChangedLinks(t *testing.T) {
	srv := s3test.Start(t)
	d := &countingDriver{Driver: open(t, testConfig(srv))}
	st := storage.NewStore(d)
	link := func(tag string) string { return "repositories/team/m/_manifests/tags/" + tag + "/current/link" }
	a, b := digest.FromString("a"), digest.FromString("b")
	for tag, dg := range map[string]digest.Digest{"v1": a, "v2": a, "v3": b} {
		if err := d.PutContent(ctx(t), link(tag), []byte(dg)); err != nil {
			t.Fatal(err)
		}
	}
	// A history object beside the links is not a tag link.
	if err := d.PutContent(ctx(t), "repositories/team/m/_manifests/tags/v1/history", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	check := func(want map[string]digest.Digest, wantGets int64) {
		t.Helper()
		d.gets.Store(0)
		got, err := st.ListTagDigests(ctx(t), "team/m", 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("TagDigests = %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("TagDigests = %v, want %v", got, want)
			}
		}
		if n := d.gets.Load(); n != wantGets {
			t.Errorf("%d link reads, want %d", n, wantGets)
		}
	}
	check(map[string]digest.Digest{"v1": a, "v2": a, "v3": b}, 3)
	check(map[string]digest.Digest{"v1": a, "v2": a, "v3": b}, 0)
	if err := d.PutContent(ctx(t), link("v2"), []byte(b)); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx(t), "repositories/team/m/_manifests/tags/v3"); err != nil {
		t.Fatal(err)
	}
	check(map[string]digest.Digest{"v1": a, "v2": b}, 1)
}

// A tag move in a repository of 1,000 tags on versitygw (docs/registry.md
// quotes it).
func BenchmarkMoveTag1000Tags(b *testing.B) {
	srv := s3test.Start(b)
	d, err := s3.New(context.Background(), s3.Config{Bucket: srv.Bucket, Prefix: "movetag", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	storagetest.BenchMoveTag(b, d, 1000)
}
