package pin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
)

// KeyCheck (true/false) in a model section makes every sync of it run the
// model on this machine against its reference before switching, as
// `sync --check` does for all sections.
const KeyCheck = "check"

// CheckFunc runs the model whose files are in dir (a staging directory,
// not the application's) and returns an error when it must not be
// switched to.
type CheckFunc func(ctx context.Context, dir string, art *client.Artifact) error

// wantsCheck reads a section's check key.
func (c *Config) wantsCheck(key string) (bool, error) {
	m, err := c.find(key)
	if err != nil {
		return false, err
	}
	v, err := scalarValue(m, KeyCheck, key)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(v) {
	case "", "false", "no":
		return false, nil
	case "true", "yes":
		return true, nil
	}
	return false, fmt.Errorf("section %q: %s %q: want true or false", key, KeyCheck, v)
}

// checkCPU refuses an artifact whose recorded CPU requirement cpu lacks.
func checkCPU(art *client.Artifact, cpu *manifests.CPU) error {
	if cpu == nil {
		return nil
	}
	req := art.Manifest.Annotations[manifests.AnnotationRequiresCPU]
	if err := manifests.CheckCPU(req, *cpu); err != nil {
		return fmt.Errorf("%s: %w; nothing was installed (re-quantize it portable: modelctl quantize without --full-range)", art.Digest, err)
	}
	return nil
}

// stageAndCheck installs the artifact into a staging directory beside
// the cache with install (a pull, whose blobs the real install then links,
// or an install from the cache) and runs check on it. The application's
// directory is not touched.
func stageAndCheck(ctx context.Context, p Puller, art *client.Artifact, check CheckFunc, install func(dir string) (*client.PullResult, error)) error {
	base := os.TempDir()
	if c := p.Cache(); c != nil && c.Dir() != "" {
		base = c.Dir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(base, "check-")
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer os.RemoveAll(stage)
	pr, err := install(stage)
	if err != nil {
		return err
	}
	if pr.Digest != art.Digest {
		return fmt.Errorf("check: installed %s, want %s", pr.Digest, art.Digest)
	}
	if err := check(ctx, filepath.Clean(pr.Dir), art); err != nil {
		return fmt.Errorf("check on this machine failed, nothing was switched: %w", err)
	}
	return nil
}
