package tags

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

func TestPrevious(t *testing.T) {
	const a, b, c, d = digest.Digest("sha256:a"), digest.Digest("sha256:b"), digest.Digest("sha256:c"), digest.Digest("sha256:d")
	mv := func(from, to digest.Digest) Move { return Move{From: from, To: to} }
	tests := []struct {
		name    string
		moves   []Move
		cur     digest.Digest
		want    digest.Digest
		wantErr bool
	}{
		{"one push back", []Move{mv("", a), mv(a, b)}, b, a, false},
		{"rollback twice reaches the first", []Move{mv("", a), mv(a, b), mv(b, c), mv(c, b)}, b, a, false},
		{"after rolling back to the first, nothing earlier", []Move{mv("", a), mv(a, b), mv(b, a)}, a, "", true},
		{"a new push after a rollback", []Move{mv("", a), mv(a, b), mv(b, a), mv(a, c)}, c, a, false},
		{"a tag never moved", []Move{mv("", a)}, a, "", true},
		{"no history, moved elsewhere", nil, a, "", true},
		{"moved where the history did not see", []Move{mv("", a), mv(a, b)}, c, b, false},
		{"deletion and re-creation", []Move{mv("", a), mv(a, ""), mv("", b)}, b, a, false},
		{"repeated observations", []Move{mv("", a), mv(a, a), mv(a, b), mv(b, b)}, b, a, false},
		{"rollback then push of the same", []Move{mv("", a), mv(a, b), mv(b, c), mv(c, b), mv(b, d)}, d, b, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Previous(tt.moves, tt.cur)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Previous = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// pushVersion pushes a one-file model of random bytes under ref and
// returns its digest.
func pushVersion(t *testing.T, c *client.Client, ref string) digest.Digest {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.onnx")
	b := make([]byte, 1024)
	_, _ = rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := client.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(context.Background(), r, client.PushOptions{Files: []client.PushFile{{Path: "m.onnx", Source: p, MediaType: manifests.MediaTypeWeightRaw}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest
}

func mustRef(t *testing.T, s string) client.Reference {
	t.Helper()
	r, err := client.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTagHistoryRollback runs the same story against modelctl serve
// (history server-side) and distribution (history client-side).
func TestTagHistoryRollback(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	for _, tc := range []struct {
		name   string
		start  func(t testing.TB) *testenv.Registry
		source Source
	}{
		{"modelctl", testenv.StartOurs, SourceRegistry},
		{"distribution", testenv.StartDistribution, SourceClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			addr := tc.start(t).Addr
			c, err := client.New(client.Options{CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			histDir := t.TempDir()
			tg, err := New(Options{Client: testClient(t), HistoryDir: histDir, User: "tester@host"})
			if err != nil {
				t.Fatal(err)
			}
			repo := addr + "/sarai/audio"
			v1 := pushVersion(t, c, repo+":int8")
			// On a registry without history, what modelctl sees is recorded.
			if err := tg.Observe(ctx, mustRef(t, repo+":int8"), v1); err != nil {
				t.Fatal(err)
			}
			v2 := pushVersion(t, c, repo+":int8")
			if err := tg.Observe(ctx, mustRef(t, repo+":int8"), v2); err != nil {
				t.Fatal(err)
			}

			// tag: stable -> v1, by digest.
			res, err := tg.Tag(ctx, mustRef(t, repo+"@"+v1.String()), "stable")
			if err != nil {
				t.Fatal(err)
			}
			if res.To != v1 || res.History != tc.source {
				t.Fatalf("Tag = %+v", res)
			}
			if tc.source == SourceClient && !strings.HasPrefix(res.HistoryFile, histDir) {
				t.Fatalf("client-side history file %q is not under %s", res.HistoryFile, histDir)
			}

			h, err := tg.History(ctx, mustRef(t, repo+":int8"))
			if err != nil {
				t.Fatal(err)
			}
			if h.Source != tc.source || h.Current != v2 || len(h.Moves) < 2 || h.Moves[len(h.Moves)-1].To != v2 || h.Moves[len(h.Moves)-1].From != v1 {
				t.Fatalf("History = %+v", h)
			}

			// rollback: int8 back to v1, then nothing earlier.
			rb, err := tg.Rollback(ctx, mustRef(t, repo+":int8"), "")
			if err != nil {
				t.Fatal(err)
			}
			if rb.From != v2 || rb.To != v1 || rb.History != tc.source {
				t.Fatalf("Rollback = %+v", rb)
			}
			art, err := c.Resolve(ctx, mustRef(t, repo+":int8"))
			if err != nil || art.Digest != v1 {
				t.Fatalf("after rollback int8 resolves to %v, %v; want %s", art, err, v1)
			}
			if _, err := tg.Rollback(ctx, mustRef(t, repo+":int8"), ""); err == nil || !strings.Contains(err.Error(), "no earlier digest") {
				t.Fatalf("second rollback: %v", err)
			}
			// --to goes anywhere the repository has.
			if rb, err = tg.Rollback(ctx, mustRef(t, repo+":int8"), v2); err != nil || rb.To != v2 {
				t.Fatalf("rollback --to: %+v, %v", rb, err)
			}
			if _, err := tg.Rollback(ctx, mustRef(t, repo+":int8"), v2); err == nil || !strings.Contains(err.Error(), "already points") {
				t.Fatalf("rollback to the current digest: %v", err)
			}
			unknown := digest.FromString("nothing")
			if _, err := tg.Rollback(ctx, mustRef(t, repo+":int8"), unknown); err == nil {
				t.Fatal("rollback to a digest the repository lacks succeeded")
			}
			if _, err := tg.History(ctx, mustRef(t, repo+":nope")); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("history of a missing tag: %v", err)
			}
		})
	}
}

// TestRollbackCompareAndSwap: on modelctl's registry a move whose "from"
// is stale is refused, so a rollback never overwrites a concurrent push.
func TestRollbackCompareAndSwap(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	ctx := context.Background()
	addr := testenv.StartServe(t, nil, "--root", t.TempDir()).Addr
	c, err := client.New(client.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tagger, err := New(Options{Client: testClient(t), HistoryDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	repo := addr + "/r"
	v1 := pushVersion(t, c, repo+":t")
	v2 := pushVersion(t, c, repo+":t")
	v3 := pushVersion(t, c, repo+":t")
	tg, tctx, err := tagger.target(ctx, mustRef(t, repo+":t"), true)
	if err != nil {
		t.Fatal(err)
	}
	// A rollback that read v2 as current, while v3 was pushed meanwhile.
	if _, err := tg.extMove(tctx, "t", v1, v2); !errors.Is(err, errMoved) {
		t.Fatalf("stale compare-and-swap: %v, want errMoved", err)
	}
	if cur, err := tg.current(tctx, "t"); err != nil || cur != v3 {
		t.Fatalf("tag after a refused move: %s, %v; want %s", cur, err, v3)
	}
}

func TestHistoryFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "t.jsonl")
	if err := os.WriteFile(f, []byte("{\"to\":\"sha256:a\"}\n{\"to\":\"sha"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readHistory(f); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("readHistory of a cut line: %v", err)
	}
	if m, err := readHistory(filepath.Join(dir, "missing.jsonl")); err != nil || m != nil {
		t.Fatalf("missing file: %v, %v", m, err)
	}
}

func testClient(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: credentials.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
