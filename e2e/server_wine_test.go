package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// The server half on Windows (modelctl.exe under Wine): a CRLF config with
// a backslashed model_path relative to app_dir, a file edited by hand kept
// aside instead of overwritten, read-only hardlinked weights replaced, and
// a rollback with the registry stopped, from the cache.
func TestServerOnWindows(t *testing.T) {
	wine := testenv.StartWine(t)
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	m := makeSrvModels(t, repo)
	m.retag(repo, "v1", "int8")
	ws := newWinHost(t, wine, "server")
	if err := os.MkdirAll(ws.path("app/config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(ws.path("app/models"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgText := "audio:\r\n  model_path: \"models\\\\audio.onnx\"\r\n  artifact: \"" + repo + ":int8\"\r\n  app_dir: \"..\"\r\n"
	if err := os.WriteFile(ws.path("app/config/app.yaml"), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ws.path("app/models/audio.onnx"), []byte("edited by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `app\config\app.yaml`
	ws.run("sync", cfg, "--update")
	kept, _ := filepath.Glob(ws.path("app/models/audio.onnx.modelctl-kept-*"))
	if len(kept) != 1 || string(wfReadFile(t, kept[0])) != "edited by hand" {
		t.Fatalf("kept on Windows: %v", kept)
	}
	wfSameBytes(t, ws.path("app/models"), filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")

	m.retag(repo, "v2", "int8")
	ws.run("sync", cfg, "--update")
	wfSameBytes(t, ws.path("app/models"), filepath.Dir(m.v2), "audio.onnx", "audio.onnx.data")
	if k, _ := filepath.Glob(ws.path("app/models/*.modelctl-kept-*")); len(k) != 1 {
		t.Fatalf("replacing an installed version kept copies on Windows: %v", k)
	}

	srv.Kill()
	out := ws.run("rollback", cfg)
	if !strings.Contains(out, "registry was not consulted") {
		t.Fatalf("rollback on Windows with the registry stopped: %s", out)
	}
	wfSameBytes(t, ws.path("app/models"), filepath.Dir(m.v1), "audio.onnx", "audio.onnx.data")
	ws.run("verify", cfg)
	if got := string(wfReadFile(t, ws.path("app/config/app.yaml"))); !strings.Contains(got, m.dv1) || !strings.Contains(got, "\r\n  app_dir") {
		t.Fatalf("config after rollback on Windows:\n%q", got)
	}
}
