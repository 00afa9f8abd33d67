package client

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// registryServer is a registry a test pushes to, with its storage on disk.
type registryServer struct {
	Name string
	Addr string
	Root string
	Proc *testenv.Process
}

// startDistribution starts CNCF distribution v3.1.2 on a free loopback port
// with filesystem storage in a temporary directory and delete enabled.
func startDistribution(t testing.TB) *registryServer {
	t.Helper()
	bin := testenv.Tool(t, "registry")
	root := t.TempDir()
	addr := testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: modelctl-test-secret
`, root, addr)
	cfgPath := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, addr, "http://%s/v2/", []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfgPath)
	return &registryServer{Name: "distribution", Addr: addr, Root: root, Proc: p}
}

// startOurs starts `modelctl serve` with its storage in a temporary directory.
func startOurs(t testing.TB) *registryServer {
	t.Helper()
	root := t.TempDir()
	p := testenv.StartServe(t, nil, "--root", root)
	return &registryServer{Name: "modelctl", Addr: p.Addr, Root: root, Proc: p}
}

func writeRandom(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func sameFile(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ (%d vs %d bytes)", a, b, len(x), len(y))
	}
}

func newTestClient(t testing.TB, opts Options) *Client {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	if opts.Credentials == nil {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
