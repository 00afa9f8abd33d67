package pin

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

// countingPuller counts what Sync asks of the registry.
type countingPuller struct {
	*client.Client
	resolves, pulls int
}

func (p *countingPuller) Resolve(ctx context.Context, ref client.Reference) (*client.Artifact, error) {
	p.resolves++
	return p.Client.Resolve(ctx, ref)
}

func (p *countingPuller) Pull(ctx context.Context, ref client.Reference, dir string) (*client.PullResult, error) {
	p.pulls++
	return p.Client.Pull(ctx, ref, dir)
}

// pushModel pushes files (name -> size, random bytes) under ref and
// returns the digest and the local copies.
func pushModel(t *testing.T, c *client.Client, ref string, files map[string]int64) (digest.Digest, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	var pf []client.PushFile
	content := map[string][]byte{}
	for name, size := range files {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		content[name] = b
		pf = append(pf, client.PushFile{Path: name, Source: p, MediaType: manifests.MediaTypeWeightRaw})
	}
	r, err := client.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(context.Background(), r, client.PushOptions{Files: pf})
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest, content
}

// startRegistry starts modelctl serve on a fresh root and returns it with
// a client that has a cache and credentials of its own.
func startRegistry(t *testing.T) (*testenv.Process, *client.Client) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	c, err := client.New(client.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func writeConfig(t *testing.T, path, text string) *Config {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSyncVerify(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	p := &countingPuller{Client: c}
	repo := srv.Addr + "/app"
	// Two models installed into the same directory, one in a subdirectory
	// of its artifact.
	da, fa := pushModel(t, c, repo+"/a:v", map[string]int64{"a.onnx": 1000, "a.onnx.data": 5 << 20})
	db, fb := pushModel(t, c, repo+"/b:v", map[string]int64{"onnx/b.onnx": 2000})

	work := t.TempDir()
	t.Chdir(work) // model_path is relative to the working directory
	cfg := writeConfig(t, filepath.Join(work, "conf", "app.yaml"), `# app
a:
  model_path: models/a.onnx
  artifact: `+repo+`/a:v
b:
  model_path: 'models\onnx\b.onnx'
  artifact: `+repo+`/b:v
`)
	// Not pinned yet: sync refuses, verify says so.
	if _, err := Sync(ctx, cfg, p, SyncOptions{}); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("sync of unpinned sections: %v", err)
	}
	if _, err := cfg.Verified(ctx, "a"); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("Verified of an unpinned section: %v", err)
	}

	// --update pins and installs.
	res, err := Sync(ctx, cfg, p, SyncOptions{Update: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Digest != da || res[1].Digest != db || res[0].Status != "installed" || res[0].Transferred != 1000+5<<20 {
		t.Fatalf("sync --update: %+v", res)
	}
	reloaded, err := Load(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := reloaded.Section("b"); s.Digest != db {
		t.Fatalf("pin of b not saved: %+v", s)
	}
	for name, want := range fa {
		if got, _ := os.ReadFile(filepath.Join("models", name)); string(got) != string(want) {
			t.Fatalf("installed %s differs", name)
		}
	}
	if got, _ := os.ReadFile(filepath.Join("models", "onnx", "b.onnx")); string(got) != string(fb["onnx/b.onnx"]) {
		t.Fatal("installed onnx/b.onnx differs")
	}

	// A second sync asks the registry nothing.
	p.resolves, p.pulls = 0, 0
	res, err = Sync(ctx, reloaded, p, SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.resolves != 0 || p.pulls != 0 || res[0].Status != "up to date" || res[1].Status != "up to date" {
		t.Fatalf("second sync: %d resolves, %d pulls, %+v", p.resolves, p.pulls, res)
	}

	m, err := reloaded.Verified(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if m.Digest != db || m.Path != filepath.Join("models", "onnx", "b.onnx") || m.Root != "models" || len(m.Files) != 1 {
		t.Fatalf("Verified(b) = %+v", m)
	}

	// Tampering: a changed byte, a missing file, each named.
	data := filepath.Join("models", "a.onnx.data")
	_ = os.Chmod(data, 0o644)
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'!'}, 12345); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Remove(filepath.Join("models", "a.onnx")); err != nil {
		t.Fatal(err)
	}
	_, err = reloaded.Verified(ctx, "a")
	var ve *VerifyError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("Verified after tampering: %v", err)
	}
	kinds := map[string]string{}
	for _, pr := range ve.Problems {
		kinds[pr.Path] = pr.Kind
	}
	if kinds[filepath.Join(wd, "models", "a.onnx")] != "missing" || kinds[filepath.Join(wd, data)] != "modified" { // problems name absolute paths
		t.Fatalf("problems = %+v", ve.Problems)
	}
	all, err := reloaded.VerifyAll(ctx)
	if err != nil || len(all) != 2 || all[0].OK || !all[1].OK {
		t.Fatalf("VerifyAll = %+v, %v", all, err)
	}

	// sync repairs it.
	if _, err := Sync(ctx, reloaded, p, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.Verified(ctx, "a"); err != nil {
		t.Fatalf("after repair: %v", err)
	}

	// A record whose manifest is not the pinned one is not trusted.
	rec := recordPath("models", da)
	raw, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rec, append(raw, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.Verified(ctx, "a"); err == nil || !strings.Contains(err.Error(), "not the pinned") {
		t.Fatalf("Verified with a forged record: %v", err)
	}
	if err := os.WriteFile(rec, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSyncErrors(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	d, _ := pushModel(t, c, srv.Addr+"/m:v", map[string]int64{"m.onnx": 100})
	work := t.TempDir()
	t.Chdir(work)
	other := digest.FromString("other")
	tests := []struct {
		name, conf, wantErr string
	}{
		{"model_path names no file", "x:\n  model_path: models/other.onnx\n  artifact: " + srv.Addr + "/m:v\n  artifact_digest: " + d.String() + "\n", "names no file of the artifact"},
		{"no model_path", "x:\n  artifact: " + srv.Addr + "/m:v\n  artifact_digest: " + d.String() + "\n", "no model_path"},
		{"artifact and pin disagree", "x:\n  model_path: m.onnx\n  artifact: " + srv.Addr + "/m@" + d.String() + "\n  artifact_digest: " + other.String() + "\n", "fix one of them"},
		{"pinned digest unknown", "x:\n  model_path: m.onnx\n  artifact: " + srv.Addr + "/m:v\n  artifact_digest: " + other.String() + "\n", "MANIFEST_UNKNOWN"},
		{"no sections", "server: {port: 1}\n", "no model sections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, filepath.Join(work, "c.yaml"), tt.conf)
			before, _ := os.ReadFile(cfg.Path)
			_, err := Sync(ctx, cfg, c, SyncOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if after, _ := os.ReadFile(cfg.Path); string(after) != string(before) {
				t.Fatalf("a failed sync changed the config")
			}
		})
	}

	// A symlink planted where the record goes is refused.
	cfg := writeConfig(t, filepath.Join(work, "c.yaml"), "x:\n  model_path: inst/m.onnx\n  artifact: "+srv.Addr+"/m:v\n  artifact_digest: "+d.String()+"\n")
	if err := os.MkdirAll(filepath.Join("inst", ".modelctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join("inst", ".modelctl", "pins")); err != nil {
		t.Fatal(err)
	}
	if _, err := Sync(ctx, cfg, c, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("sync through a planted link: %v", err)
	}
}

func TestPin(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	d, _ := pushModel(t, c, srv.Addr+"/m:v", map[string]int64{"m.onnx": 100})
	ref := srv.Addr + "/m:v"
	tests := []struct {
		name, conf, key, ref, wantErr, wantLine string
	}{
		{"pins a tag", "x:\n  model_path: models/m.onnx\n", "x", ref, "", "  artifact_digest: " + d.String()},
		{"pins a digest", "x:\n  model_path: m.onnx\n", "x", srv.Addr + "/m@" + d.String(), "", "  artifact: " + srv.Addr + "/m@" + d.String()},
		{"model_path the artifact lacks", "x:\n  model_path: models/other.onnx\n", "x", ref, "names no file of the artifact", ""},
		{"no such tag", "x:\n  model_path: m.onnx\n", "x", srv.Addr + "/m:nope", "MANIFEST_UNKNOWN", ""},
		{"no tag or digest", "x:\n  model_path: m.onnx\n", "x", srv.Addr + "/m", "name a tag or a digest", ""},
		{"missing section", "x:\n  model_path: m.onnx\n", "y", ref, `no section "y"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, filepath.Join(t.TempDir(), "c.yaml"), tt.conf)
			got, err := cfg.Pin(ctx, c, tt.key, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if string(cfg.Bytes()) != tt.conf {
					t.Fatalf("a refused pin changed the config:\n%s", cfg.Bytes())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != d || !strings.Contains(string(cfg.Bytes()), tt.wantLine+"\n") {
				t.Fatalf("pin = %s, config:\n%s", got, cfg.Bytes())
			}
		})
	}
}

// TestSyncRemovesStaleFiles: moving a pin to a version without some file
// removes that file when it is as installed and no other section uses
// it; a file the user changed, and files of other sections, stay.
func TestSyncRemovesStaleFiles(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	repo := srv.Addr + "/m"
	pushModel(t, c, repo+":v", map[string]int64{"m.onnx": 100, "m.onnx.data": 5 << 20, "extra.bin": 300, "notes.txt": 50})
	pushModel(t, c, srv.Addr+"/other:v", map[string]int64{"o.onnx": 100})
	work := t.TempDir()
	t.Chdir(work)
	cfg := writeConfig(t, filepath.Join(work, "app.yaml"), "m:\n  model_path: models/m.onnx\n  artifact: "+repo+":v\no:\n  model_path: models/o.onnx\n  artifact: "+srv.Addr+"/other:v\n")
	if _, err := Sync(ctx, cfg, c, SyncOptions{Update: true}); err != nil {
		t.Fatal(err)
	}
	// The user edits notes.txt; then a new version without extra.bin and
	// notes.txt is pushed.
	if err := os.WriteFile(filepath.Join("models", "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2, _ := pushModel(t, c, repo+":v", map[string]int64{"m.onnx": 100, "m.onnx.data": 5 << 20})
	res, err := Sync(ctx, cfg, c, SyncOptions{Update: true})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join("models", "extra.bin"))
	if res[0].Digest != v2 || len(res[0].Removed) != 1 || res[0].Removed[0] != abs {
		t.Fatalf("sync --update: %+v", res)
	}
	for _, keep := range []string{"notes.txt", "o.onnx", "m.onnx", "m.onnx.data"} {
		if _, err := os.Stat(filepath.Join("models", keep)); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
	if _, err := os.Stat(abs); !os.IsNotExist(err) {
		t.Errorf("extra.bin still there: %v", err)
	}
	if _, err := cfg.Verified(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Verified(ctx, "o"); err != nil {
		t.Fatal(err)
	}
}

// A section with check: true is checked also when its model comes from the
// cache with the registry down (a rollback during an incident): the model
// runs from a staging directory before the switch, and a failing check
// leaves the installed model and the pin as they were.
func TestCheckFromTheCacheWithRegistryDown(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	p := &countingPuller{Client: c}
	repo := srv.Addr + "/app/m"
	d1, f1 := pushModel(t, c, repo+":v1", map[string]int64{"m.onnx": 1000, "m.onnx.data": 1 << 20})
	work := t.TempDir()
	t.Chdir(work)
	cfg := writeConfig(t, filepath.Join(work, "app.yaml"), "m:\n  model_path: models/m.onnx\n  artifact: "+repo+":v1\n  check: true\n")

	var checked []string // the staged files each check saw, and where
	fail := false
	check := func(ctx context.Context, dir string, art *client.Artifact) error {
		b, err := os.ReadFile(filepath.Join(dir, "m.onnx.data"))
		if err != nil {
			return err
		}
		if filepath.Dir(dir) == filepath.Join(work, "models") || strings.HasPrefix(dir, filepath.Join(work, "models")) {
			return errors.New("checked in the application's directory")
		}
		checked = append(checked, art.Digest.String()+" "+digest.FromBytes(b).String())
		if fail {
			return errors.New("gates failed")
		}
		return nil
	}
	opts := SyncOptions{Update: true, Check: check}
	if _, err := Sync(ctx, cfg, p, opts); err != nil {
		t.Fatal(err)
	}
	d2, _ := pushModel(t, c, repo+":v1", map[string]int64{"m.onnx": 1000, "m.onnx.data": 1 << 20})
	if _, err := Sync(ctx, cfg, p, opts); err != nil {
		t.Fatal(err)
	}
	if len(checked) != 2 {
		t.Fatalf("checks: %v", checked)
	}
	srv.Kill()

	// The check fails: nothing moves.
	fail = true
	if _, err := Rollback(ctx, cfg, p, RollbackOptions{Sync: SyncOptions{Check: check}}); err == nil || !strings.Contains(err.Error(), "check on this machine failed") {
		t.Fatalf("rollback whose check fails: %v", err)
	}
	if s, _ := mustLoad(t, cfg.Path).Section("m"); s.Digest != d2 {
		t.Fatalf("a failed check moved the pin to %s", s.Digest)
	}
	fail = false
	res, err := Rollback(ctx, cfg, p, RollbackOptions{Sync: SyncOptions{Check: check}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !res[0].Checked || !res[0].FromCache || res[0].Digest != d1 {
		t.Fatalf("rollback with check from the cache: %+v", res)
	}
	if len(checked) != 4 || !strings.HasPrefix(checked[3], d1.String()+" "+digest.FromBytes(f1["m.onnx.data"]).String()) {
		t.Fatalf("checks: %v", checked)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "models", "m.onnx.data")); string(got) != string(f1["m.onnx.data"]) {
		t.Fatal("v1 not installed by the rollback")
	}
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
