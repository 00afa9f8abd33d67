package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Registry is a registry a test talks to, with its storage on disk.
type Registry struct {
	Name string
	Addr string
	Root string
	Proc *Process
}

// Registries are the registries transfer tests run against: CNCF
// distribution and `modelctl serve`, each on a free loopback port with its
// storage in a temporary directory.
var Registries = []struct {
	Name  string
	Start func(testing.TB) *Registry
}{
	{"distribution", StartDistribution},
	{"modelctl", StartOurs},
}

// StartDistribution starts CNCF distribution (make tools installs it) on a
// free loopback port with filesystem storage in a temporary directory and
// delete enabled.
func StartDistribution(t testing.TB) *Registry {
	t.Helper()
	bin := Tool(t, "registry")
	root := t.TempDir()
	addr := FreeAddr(t)
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
	p := Start(t, addr, "http://%s/v2/", []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfgPath)
	return &Registry{Name: "distribution", Addr: addr, Root: root, Proc: p}
}

// StartOurs starts `modelctl serve` with its storage in a temporary
// directory.
func StartOurs(t testing.TB) *Registry {
	t.Helper()
	root := t.TempDir()
	p := StartServe(t, nil, "--root", root)
	return &Registry{Name: "modelctl", Addr: p.Addr, Root: root, Proc: p}
}
