package pin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func TestPreviousPinIsAStack(t *testing.T) {
	v := func(n string) digest.Digest { return digest.FromString(n) }
	moves := []PinMove{
		{Key: "a", From: v("1"), To: v("2"), Why: "update"},
		{Key: "a", From: v("2"), To: v("3"), Why: "update"},
	}
	got, err := previousPin(moves, v("3"))
	if err != nil || got != v("2") {
		t.Fatalf("from v3: %s, %v", got, err)
	}
	moves = append(moves, PinMove{Key: "a", From: v("3"), To: v("2"), Why: "rollback"})
	if got, err = previousPin(moves, v("2")); err != nil || got != v("1") {
		t.Fatalf("second rollback: %s, %v (want v1, not v3 again)", got, err)
	}
	moves = append(moves, PinMove{Key: "a", From: v("2"), To: v("1"), Why: "rollback"})
	if _, err = previousPin(moves, v("1")); err == nil {
		t.Fatal("a third rollback found something before v1")
	}
	// A rollback to where the history had not been (the first one on a
	// host without history, or --to) is not undone by the next one.
	odd := []PinMove{{Key: "a", From: v("2"), To: v("1"), Why: "rollback"}}
	if _, err = previousPin(odd, v("1")); err == nil {
		t.Fatal("a second rollback went forward to v2")
	}
	// rollback --to is a move like an update: rolling back comes back.
	to := []PinMove{{Key: "a", From: v("1"), To: v("2"), Why: "update"}, {Key: "a", From: v("2"), To: v("1"), Why: "rollback"},
		{Key: "a", From: v("1"), To: v("2"), Why: "rollback --to"}}
	if got, err = previousPin(to, v("2")); err != nil || got != v("1") {
		t.Fatalf("after rollback --to: %s, %v", got, err)
	}
	// The history of a host that never moved the pin: nothing earlier.
	if _, err = previousPin(nil, v("1")); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Fatalf("empty history: %v", err)
	}
}

func TestPinHistoryFile(t *testing.T) {
	root := t.TempDir()
	d1, d2 := digest.FromString("1"), digest.FromString("2")
	for _, m := range []PinMove{{Key: "a", From: d1, To: d2}, {Key: "b", To: d1}} {
		if err := appendPinMove(root, m); err != nil {
			t.Fatal(err)
		}
	}
	// A torn last line (a crash mid-append) is skipped.
	f, _ := os.OpenFile(historyPath(root), os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.WriteString(`{"key":"a","to":"sha2`)
	f.Close()
	got, err := readPinMoves(root, "a")
	if err != nil || len(got) != 1 || got[0].To != d2 {
		t.Fatalf("moves of a: %+v, %v", got, err)
	}
	// A link planted as .modelctl is not written through.
	other := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(other, ".modelctl")); err != nil {
		t.Fatal(err)
	}
	if err := appendPinMove(other, PinMove{Key: "a", To: d1}); err == nil {
		t.Fatal("wrote the history through a link")
	}
}

// A restart command that starts a daemon, which keeps the command's
// output open, returns once the command itself is done.
func TestRunCommandDoesNotWaitForADaemon(t *testing.T) {
	start := time.Now()
	r := runCommand(context.Background(), t.TempDir(), "sleep 30 & echo started", 20*time.Second)
	if !r.OK || !strings.Contains(r.Output, "started") || time.Since(start) > 10*time.Second {
		t.Fatalf("%+v after %s", r, time.Since(start))
	}
	r = runCommand(context.Background(), t.TempDir(), "echo broken >&2; exit 3", 5*time.Second)
	if r.OK || r.Error != "exit status 3" || !strings.Contains(r.Output, "broken") {
		t.Fatalf("%+v", r)
	}
}

// The health command is retried until it passes or the timeout runs out.
func TestServiceCheckRetries(t *testing.T) {
	dir := t.TempDir()
	// Fails twice, then passes (a service still starting).
	health := "n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) >tries; [ $n -ge 2 ]"
	r := Service{Health: health, Timeout: 30 * time.Second, Dir: dir}.check(context.Background())
	if !r.OK || r.Tries != 3 {
		t.Fatalf("%+v", r)
	}
	start := time.Now()
	r = Service{Health: "false", Timeout: time.Second, Dir: dir}.check(context.Background())
	if r.OK || !strings.Contains(r.Error, "tries in 1s") || time.Since(start) > 5*time.Second {
		t.Fatalf("%+v after %s", r, time.Since(start))
	}
}

// A relative model_path resolves against -C, app_dir, or the directory
// the pin was made in; another working directory is an error with the fix.
func TestResolvedFollowsTheApplication(t *testing.T) {
	home := t.TempDir()
	app := filepath.Join(home, "app")
	if err := os.MkdirAll(filepath.Join(app, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(app, "config", "app.yaml")
	if err := os.WriteFile(path, []byte("a:\n  model_path: models/m.onnx\n  artifact: 127.0.0.1:1/m:v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := cfg.Section("a")
	t.Chdir(app)
	rs, err := cfg.resolved(s)
	if err != nil || rs.ModelPath != filepath.ToSlash(app)+"/models/m.onnx" {
		t.Fatalf("from the app: %q, %v", rs.ModelPath, err)
	}
	if err := cfg.recordAppDir(rs); err != nil {
		t.Fatal(err)
	}
	t.Chdir(home)
	if _, err := cfg.resolved(s); err == nil || !strings.Contains(err.Error(), "-C "+app) || !strings.Contains(err.Error(), "app_dir: ..") {
		t.Fatalf("from home: %v", err)
	}
	cfg.Dir = "app"
	if rs, err := cfg.resolved(s); err != nil || !strings.HasPrefix(rs.ModelPath, filepath.ToSlash(app)+"/") {
		t.Fatalf("-C app: %q, %v", rs.ModelPath, err)
	}
	cfg.Dir = ""
	s.AppDir = ".."
	if rs, err := cfg.resolved(s); err != nil || !strings.HasPrefix(rs.ModelPath, filepath.ToSlash(app)+"/") {
		t.Fatalf("app_dir: %q, %v", rs.ModelPath, err)
	}
	// An absolute model_path needs none of it.
	s.AppDir, s.ModelPath = "", filepath.ToSlash(filepath.Join(home, "x.onnx"))
	if rs, err := cfg.resolved(s); err != nil || rs.ModelPath != s.ModelPath {
		t.Fatalf("absolute: %q, %v", rs.ModelPath, err)
	}
}
