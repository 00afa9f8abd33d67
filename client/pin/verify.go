package pin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/modelctl/modelctl/client"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Model is a verified installed model.
type Model struct {
	// Key is the config section.
	Key  string
	Name string
	// Path is the model file (model_path, as a path of this system).
	Path string
	// Root is the directory the artifact is installed in.
	Root string
	// Digest is the pinned manifest digest every file was checked against.
	Digest digest.Digest
	Files  []File
}

// File is one installed file of a model.
type File struct {
	// Path is the file on disk; Rel its path in the artifact.
	Path   string
	Rel    string
	Digest digest.Digest
	Size   int64
}

// Problem is one file that is not what the pin says.
type Problem struct {
	Path string `json:"path"`
	// Kind is missing, modified, size, not a regular file, or not installed.
	Kind string `json:"kind"`
	Got  string `json:"got,omitempty"`
	Want string `json:"want,omitempty"`
}

func (p Problem) String() string {
	switch {
	case p.Got != "" || p.Want != "":
		return fmt.Sprintf("%s: %s (got %s, want %s)", p.Path, p.Kind, p.Got, p.Want)
	}
	return p.Path + ": " + p.Kind
}

// VerifyError reports a model whose installed files differ from its pin.
type VerifyError struct {
	Key      string
	Digest   digest.Digest
	Problems []Problem
}

func (e *VerifyError) Error() string {
	var s []string
	for _, p := range e.Problems {
		s = append(s, p.String())
	}
	return fmt.Sprintf("model %s (%s) does not match its pin: %s", e.Key, e.Digest, strings.Join(s, "; "))
}

// ErrNotPinned is returned for a section without artifact_digest.
var ErrNotPinned = errors.New("not pinned")

// Verified re-hashes the installed files of section key against its pin
// and returns the model, or a *VerifyError naming every file that is
// missing or differs. It needs neither the network nor the modelctl
// cache: the install root holds the pinned manifest, whose digest is
// checked against the pin before its file list is trusted.
func (c *Config) Verified(ctx context.Context, key string) (Model, error) {
	s, err := c.Section(key)
	if err != nil {
		return Model{}, err
	}
	if s.ModelPath != "" {
		if s, err = c.resolved(s); err != nil {
			return Model{}, err
		}
	}
	m, problems, err := verifySection(ctx, s)
	if err != nil {
		return Model{}, err
	}
	if len(problems) > 0 {
		return Model{}, &VerifyError{Key: key, Digest: s.Digest, Problems: problems}
	}
	if s.base != "" {
		// A relative model_path stays relative, as the application
		// (running in its directory) opens it.
		rel := func(p string) string {
			if r, err := filepath.Rel(s.base, p); err == nil {
				return r
			}
			return p
		}
		m.Path, m.Root = rel(m.Path), rel(m.Root)
		for i := range m.Files {
			m.Files[i].Path = rel(m.Files[i].Path)
		}
	}
	return m, nil
}

// VerifyResult is the outcome of verifying one section.
type VerifyResult struct {
	Key      string        `json:"key"`
	Artifact string        `json:"artifact,omitempty"`
	Digest   digest.Digest `json:"digest"`
	Path     string        `json:"path"`
	Files    int           `json:"files"`
	Size     int64         `json:"size"`
	OK       bool          `json:"ok"`
	Problems []Problem     `json:"problems,omitempty"`
}

// VerifyAll verifies every pinned section. An error is returned only when
// verification could not run (bad config); files that differ are reported
// in the results.
func (c *Config) VerifyAll(ctx context.Context) ([]VerifyResult, error) {
	secs, err := c.Sections()
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 {
		return nil, fmt.Errorf("no model sections (with %s or %s) in the config", KeyArtifact, KeyDigest)
	}
	var out []VerifyResult
	for _, s := range secs {
		if s.ModelPath != "" {
			if s, err = c.resolved(s); err != nil {
				return nil, err
			}
		}
		r := VerifyResult{Key: s.Key, Artifact: s.Artifact, Digest: s.Digest, Path: s.ModelPath}
		m, problems, err := verifySection(ctx, s)
		switch {
		case errors.Is(err, ErrNotPinned):
			problems = []Problem{{Path: s.ModelPath, Kind: "not pinned (run modelctl pin or sync --update)"}}
		case err != nil:
			return nil, err
		}
		r.Problems, r.OK = problems, len(problems) == 0
		for _, f := range m.Files {
			r.Files++
			r.Size += f.Size
		}
		out = append(out, r)
	}
	return out, nil
}

func verifySection(ctx context.Context, s Section) (Model, []Problem, error) {
	if s.Digest == "" {
		return Model{}, nil, fmt.Errorf("section %q: %w: run modelctl pin or modelctl sync --update", s.Key, ErrNotPinned)
	}
	if s.ModelPath == "" {
		return Model{}, nil, fmt.Errorf("section %q has no %s", s.Key, KeyModelPath)
	}
	local, err := LocalPath(s.ModelPath)
	if err != nil {
		return Model{}, nil, fmt.Errorf("section %q: %w", s.Key, err)
	}
	inst, err := findInstall(local, s.ModelPath, s.Digest)
	if err != nil {
		if errors.Is(err, errNotInstalled) {
			kind := "not installed (run modelctl sync)"
			if _, serr := os.Lstat(local); serr != nil {
				kind = "missing; " + kind
			}
			return Model{}, []Problem{{Path: local, Kind: kind}}, nil
		}
		return Model{}, nil, fmt.Errorf("section %q: %w", s.Key, err)
	}
	m := Model{Key: s.Key, Name: s.Name, Path: local, Root: inst.Root, Digest: s.Digest}
	for _, f := range inst.Manifest.Files {
		m.Files = append(m.Files, File{Path: filepath.Join(inst.Root, filepath.FromSlash(f.Path)), Rel: f.Path, Digest: f.Digest, Size: f.Size})
	}
	problems := make([]*Problem, len(m.Files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	for i, f := range m.Files {
		g.Go(func() error {
			p, err := checkFile(gctx, f)
			problems[i] = p
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Model{}, nil, fmt.Errorf("section %q: %w", s.Key, err)
	}
	var out []Problem
	for _, p := range problems {
		if p != nil {
			out = append(out, *p)
		}
	}
	return m, out, nil
}

// checkFile re-hashes one installed file. A problem with the file is a
// Problem; only cancellation is an error.
func checkFile(ctx context.Context, f File) (*Problem, error) {
	fi, err := os.Lstat(f.Path)
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		return &Problem{Path: f.Path, Kind: "missing"}, nil
	case err != nil:
		return &Problem{Path: f.Path, Kind: "unreadable: " + err.Error()}, nil
	case !fi.Mode().IsRegular():
		return &Problem{Path: f.Path, Kind: "not a regular file"}, nil
	case fi.Size() != f.Size:
		return &Problem{Path: f.Path, Kind: "size", Got: fmt.Sprint(fi.Size()), Want: fmt.Sprint(f.Size)}, nil
	}
	got, err := client.HashFile(ctx, f.Path, f.Digest.Algorithm())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return &Problem{Path: f.Path, Kind: "unreadable: " + err.Error()}, nil
	}
	if got != f.Digest {
		return &Problem{Path: f.Path, Kind: "modified", Got: got.String(), Want: f.Digest.String()}, nil
	}
	return nil, nil
}
