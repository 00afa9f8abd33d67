package pin

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
)

// Sync refuses an artifact whose recorded CPU requirement the given CPU
// lacks, before anything is fetched, and runs the check hook on a staged
// copy before switching: a failed check leaves pin and files as they were.
func TestSyncCPUAndCheck(t *testing.T) {
	ctx := context.Background()
	srv, c := startRegistry(t)
	p := &countingPuller{Client: c}
	repo := srv.Addr + "/app/m"
	push := func(tag string, requires string) []byte {
		dir := t.TempDir()
		b := make([]byte, 4096)
		_, _ = rand.Read(b)
		src := filepath.Join(dir, "m.onnx")
		if err := os.WriteFile(src, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ref, _ := client.ParseReference(repo + ":" + tag)
		ann := map[string]string{}
		if requires != "" {
			ann[manifests.AnnotationRequiresCPU] = requires
		}
		if _, err := c.Push(ctx, ref, client.PushOptions{Files: []client.PushFile{{Path: "m.onnx", Source: src, MediaType: manifests.MediaTypeWeightRaw}},
			Pack: manifests.PackOptions{Annotations: ann}}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 := push("v1", "")
	push("vnni", manifests.RequireVNNI)
	v3 := push("v3", "")

	work := t.TempDir()
	t.Chdir(work)
	path := filepath.Join(work, "app.yaml")
	cfg := writeConfig(t, path, "m:\n  model_path: models/m.onnx\n  artifact: "+repo+":v1\n")
	avx2 := &manifests.CPU{Arch: "amd64", Features: []string{"avx", "avx2", "fma"}}
	vnni := &manifests.CPU{Arch: "amd64", Features: []string{"avx2", "avx512vnni"}}
	if _, err := Sync(ctx, cfg, p, SyncOptions{Update: true, CPU: avx2}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		a, _ := os.ReadFile(path)
		b, _ := os.ReadFile(filepath.Join("models", "m.onnx"))
		return string(a) + string(b)
	}
	before := snapshot()
	retag := func(tag string) *Config {
		b, _ := os.ReadFile(path)
		s := strings.NewReplacer(":v1\n", ":"+tag+"\n", ":vnni\n", ":"+tag+"\n", ":v3\n", ":"+tag+"\n").Replace(string(b))
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		before = snapshot()
		cfg, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	// Requirement not met: refused, nothing pulled, nothing changed.
	cfg = retag("vnni")
	p.pulls = 0
	if _, err := Sync(ctx, cfg, p, SyncOptions{Update: true, CPU: avx2}); err == nil || !strings.Contains(err.Error(), "the model needs amd64 with avx512vnni") {
		t.Fatalf("sync of a VNNI model on AVX2: %v", err)
	}
	if p.pulls != 0 || snapshot() != before {
		t.Fatalf("refused sync: %d pulls, changed: %v", p.pulls, snapshot() != before)
	}
	// The same artifact on a CPU that has VNNI: installed (no CPU given: not checked).
	if _, err := Sync(ctx, cfg, p, SyncOptions{Update: true, CPU: vnni}); err != nil {
		t.Fatalf("sync of a VNNI model with VNNI: %v", err)
	}

	// A failing check: nothing switched; the hook saw the staged files.
	cfg = retag("v3")
	var staged string
	failing := func(ctx context.Context, dir string, art *client.Artifact) error {
		b, err := os.ReadFile(filepath.Join(dir, "m.onnx"))
		if err != nil || string(b) != string(v3) {
			t.Errorf("check hook: staged m.onnx %v", err)
		}
		staged = dir
		return errors.New("gates failed here")
	}
	if _, err := Sync(ctx, cfg, p, SyncOptions{Update: true, Check: failing, CheckAll: true}); err == nil || !strings.Contains(err.Error(), "gates failed here") {
		t.Fatalf("sync with a failing check: %v", err)
	}
	if snapshot() != before {
		t.Fatal("a failed check changed the config or the files")
	}
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Fatalf("staging directory %s left behind: %v", staged, err)
	}
	// check: true in the section, without a hook: refused.
	if err := os.WriteFile(path, []byte(strings.Replace(string(mustRead(t, path)), "m:\n", "m:\n  check: true\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ = Load(path)
	if _, err := Sync(ctx, cfg, p, SyncOptions{Update: true}); err == nil || !strings.Contains(err.Error(), "cannot run models") {
		t.Fatalf("check: true without a check: %v", err)
	}
	// A passing check on check: true: installed.
	res, err := Sync(ctx, cfg, p, SyncOptions{Update: true, Check: func(context.Context, string, *client.Artifact) error { return nil }})
	if err != nil || len(res) != 1 || !res[0].Checked {
		t.Fatalf("sync with a passing check: %+v, %v", res, err)
	}
	if got := mustRead(t, filepath.Join("models", "m.onnx")); string(got) != string(v3) || string(got) == string(v1) {
		t.Fatal("v3 not installed after its check passed")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
