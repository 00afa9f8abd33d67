package pin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/signing"
)

// Resolver is what pin and sync need of a registry client.
type Resolver interface {
	Resolve(ctx context.Context, ref client.Reference) (*client.Artifact, error)
}

// Puller installs an artifact into a directory.
type Puller interface {
	Resolver
	Pull(ctx context.Context, ref client.Reference, dir string) (*client.PullResult, error)
	Cache() *client.Cache
}

// Pin resolves ref and writes it and its digest into section key of the
// config file (not saved: call Save).
func (c *Config) Pin(ctx context.Context, r Resolver, key, ref string) (digest.Digest, error) {
	if _, err := c.find(key); err != nil {
		return "", fmt.Errorf("pin: %w", err)
	}
	pr, err := client.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("pin: %w", err)
	}
	if pr.Reference() == "" {
		return "", fmt.Errorf("pin: %s: name a tag or a digest", ref)
	}
	art, err := r.Resolve(ctx, pr)
	if err != nil {
		return "", fmt.Errorf("pin %s: %w", key, err)
	}
	// A model_path that sync could not install is refused now, not later.
	if s, err := c.Section(key); err == nil && s.ModelPath != "" {
		if _, _, err := installRoot(runtime.GOOS, s.ModelPath, art.Manifest.Files); err != nil {
			return "", fmt.Errorf("pin %s: %w", key, err)
		}
	}
	if err := c.SetPin(key, ref, art.Digest); err != nil {
		return "", err
	}
	return art.Digest, nil
}

// SyncOptions control Sync.
type SyncOptions struct {
	// Update re-resolves each section's artifact (its tag) and rewrites the
	// pins to what the tags point at now.
	Update bool
	// Resolved, when set, is told every tag resolution (client-side tag
	// history for registries that keep none).
	Resolved func(ctx context.Context, ref client.Reference, d digest.Digest)
	// Signing is how signatures are fetched for sections that require them.
	Signing signing.Options
	// CPU is the processor the models will run on (hostcpu.Host() for this
	// machine): an artifact whose recorded CPU requirement it does not
	// meet is refused before anything is fetched. nil: not checked.
	CPU *manifests.CPU
	// Check runs a model in a staging directory before it is switched to:
	// for every section when CheckAll, else for those with check: true.
	// A section that wants a check when Check is nil fails.
	Check    CheckFunc
	CheckAll bool
}

// SyncResult is what Sync did for one section.
type SyncResult struct {
	Key      string        `json:"key"`
	Artifact string        `json:"artifact"`
	Digest   digest.Digest `json:"digest"`
	// Previous is the pin before an update moved it.
	Previous digest.Digest `json:"previous,omitempty"`
	Path     string        `json:"path"`
	Root     string        `json:"root"`
	// Status is "up to date" (nothing touched) or "installed".
	Status      string `json:"status"`
	Files       int    `json:"files"`
	Size        int64  `json:"size"`
	Transferred int64  `json:"transferred"`
	// Checked: the model ran on this machine against its reference and
	// passed its gates before it was installed.
	Checked bool `json:"checked,omitempty"`
	// Removed lists files of the previous pin that the new one lacks,
	// removed because no section uses them and they were unchanged.
	Removed []string `json:"removed,omitempty"`
}

// Sync installs the pinned artifact of every section into the directory of
// its model_path: files are fetched into the cache and verified before
// they appear (client.Pull), and an installation that is already complete
// is left alone without asking the registry anything, so a second sync
// transfers nothing. With Update, tags are resolved first and the pins of
// the sections installed are rewritten in the file, after their files are
// in place. Sections are independent: each failure is reported and the
// others proceed.
func Sync(ctx context.Context, cfg *Config, p Puller, opts SyncOptions) ([]SyncResult, error) {
	secs, err := cfg.Sections()
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 {
		return nil, fmt.Errorf("no model sections (with %s or %s) in the config", KeyArtifact, KeyDigest)
	}
	var results []SyncResult
	var errs []error
	changed := false
	claims := map[string]map[string]digest.Digest{} // section key -> files its pin installs
	for _, s := range secs {
		claims[s.Key] = installedFiles(s, s.Digest)
	}
	for _, s := range secs {
		if s.SigningKey != "" && !filepath.IsAbs(s.SigningKey) && cfg.Path != "" {
			s.SigningKey = filepath.Join(filepath.Dir(cfg.Path), filepath.FromSlash(s.SigningKey))
		}
		check, err := cfg.wantsCheck(s.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", s.Key, err))
			continue
		}
		res, err := syncSection(ctx, p, s, opts, check || opts.CheckAll)
		if err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", s.Key, err))
			continue
		}
		if res.Digest != s.Digest {
			if err := cfg.SetPin(s.Key, s.Artifact, res.Digest); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Previous = s.Digest
			changed = true
			old := claims[s.Key]
			claims[s.Key] = installedFiles(s, res.Digest)
			res.Removed = removeStale(p.Cache(), old, claims)
		}
		results = append(results, *res)
	}
	if changed && cfg.Path != "" {
		if err := cfg.Save(); err != nil {
			errs = append(errs, err)
		}
	}
	return results, errors.Join(errs...)
}

func syncSection(ctx context.Context, p Puller, s Section, opts SyncOptions, check bool) (*SyncResult, error) {
	if check && opts.Check == nil {
		return nil, fmt.Errorf("%s is true but this modelctl cannot run models (built without onnxruntime support)", KeyCheck)
	}
	if s.Artifact == "" {
		return nil, fmt.Errorf("no %s to fetch from", KeyArtifact)
	}
	if s.ModelPath == "" {
		return nil, fmt.Errorf("no %s to install at", KeyModelPath)
	}
	ref, err := client.ParseReference(s.Artifact)
	if err != nil {
		return nil, err
	}
	if ref.Digest != "" && s.Digest != "" && ref.Digest != s.Digest {
		return nil, fmt.Errorf("%s names %s but %s is %s: fix one of them", KeyArtifact, ref.Digest, KeyDigest, s.Digest)
	}
	local, err := LocalPath(s.ModelPath)
	if err != nil {
		return nil, err
	}
	want := s.Digest
	var art *client.Artifact
	switch {
	case opts.Update && ref.Digest == "" && ref.Tag != "":
		art, err = p.Resolve(ctx, ref)
		if err != nil {
			return nil, err
		}
		want = art.Digest
		if opts.Resolved != nil {
			opts.Resolved(ctx, ref, want)
		}
	case want == "" && ref.Digest != "":
		want = ref.Digest
	case want == "":
		return nil, fmt.Errorf("%w: run modelctl pin or modelctl sync --update", ErrNotPinned)
	}
	res := &SyncResult{Key: s.Key, Artifact: s.Artifact, Digest: want, Path: local}

	if inst, err := findInstall(local, s.ModelPath, want); err == nil && installedOK(ctx, p.Cache(), inst) {
		// Installed before the section required a signature, or under
		// another key: verified now, before "up to date" is said.
		if s.RequireSignature && !installedSigned(inst.Root, want, s) {
			keyID, err := requireSignature(ctx, ref.WithDigest(want), s, opts.Signing)
			if err != nil {
				return nil, fmt.Errorf("installed %s: %w", want, err)
			}
			if err := writeSigned(inst.Root, want, keyID); err != nil {
				return nil, fmt.Errorf("record the signature: %w", err)
			}
		}
		res.Status, res.Root = "up to date", inst.Root
		if abs, err := filepath.Abs(inst.Root); err == nil {
			res.Root = abs
		}
		for _, f := range inst.Manifest.Files {
			res.Files++
			res.Size += f.Size
		}
		return res, nil
	}

	pinned := ref.WithDigest(want)
	if art == nil || art.Digest != want {
		if art, err = p.Resolve(ctx, pinned); err != nil {
			return nil, err
		}
	}
	if err := checkCPU(art, opts.CPU); err != nil {
		return nil, err
	}
	root, _, err := installRoot(runtime.GOOS, s.ModelPath, art.Manifest.Files)
	if err != nil {
		return nil, err
	}
	root = filepath.FromSlash(root)
	var keyID string
	if s.RequireSignature {
		// Before any file is written: an unsigned or wrongly signed
		// artifact never reaches the model directory.
		if keyID, err = requireSignature(ctx, pinned, s, opts.Signing); err != nil {
			return nil, err
		}
	}
	var staged int64
	if check {
		if staged, err = stageAndCheck(ctx, p, pinned, art, opts.Check); err != nil {
			return nil, err
		}
		res.Checked = true
	}
	pr, err := p.Pull(ctx, pinned, root)
	if err != nil {
		return nil, err
	}
	pr.Transferred += staged
	if pr.Digest != want {
		return nil, fmt.Errorf("pulled %s, want %s", pr.Digest, want)
	}
	recordDigests(p.Cache(), pr.Dir, pr.Files)
	if err := writeRecord(root, want, art.Raw); err != nil {
		return nil, fmt.Errorf("record the installation: %w", err)
	}
	if keyID != "" {
		// Verified before the pull: recorded with the key that did.
		if err := writeSigned(root, want, keyID); err != nil {
			return nil, fmt.Errorf("record the signature: %w", err)
		}
	}
	res.Status, res.Root = "installed", pr.Dir
	res.Files, res.Size, res.Transferred = len(pr.Files), pr.Size, pr.Transferred
	return res, nil
}

// installedOK reports whether every file of an installation is in place
// without reading the large ones when it can: a file whose path, size,
// mtime and inode are unchanged since its digest was recorded (the
// client's digest cache) is what was recorded; a file that is the cache
// blob itself (a hardlink, whose integrity the cache tracks) is the blob;
// anything else is hashed. `modelctl verify` always hashes.
func installedOK(ctx context.Context, cache *client.Cache, inst *install) bool {
	root, err := filepath.Abs(inst.Root)
	if err != nil {
		return false
	}
	for _, f := range inst.Manifest.Files {
		// Absolute: the digest cache is keyed by path.
		path := filepath.Join(root, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			return false
		}
		if cache != nil {
			if d, ok := cache.LookupDigest(path, fi); ok {
				if d != f.Digest {
					return false
				}
				continue
			}
			if bi, err := os.Stat(cache.BlobPath(f.Digest)); err == nil && os.SameFile(fi, bi) && cache.HasBlob(f.Digest, f.Size) {
				continue
			}
		}
		got, err := hashFile(ctx, path, f.Digest.Algorithm())
		if err != nil {
			return false
		}
		if cache != nil {
			_ = cache.StoreDigest(path, fi, got)
		}
		if got != f.Digest {
			return false
		}
	}
	return true
}

// recordDigests stores the digests of freshly installed files in the
// client's digest cache, so the next sync recognises them by stat alone.
func recordDigests(cache *client.Cache, root string, files []client.FileResult) {
	if cache == nil {
		return
	}
	for _, f := range files {
		path := filepath.Join(root, filepath.FromSlash(f.Path))
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
			_ = cache.StoreDigest(path, fi, f.Digest)
		}
	}
}

// installedFiles returns the absolute paths of the files that the pin d
// of section s has installed, with their digests (none when it is not
// installed).
func installedFiles(s Section, d digest.Digest) map[string]digest.Digest {
	out := map[string]digest.Digest{}
	if d == "" || s.ModelPath == "" {
		return out
	}
	local, err := LocalPath(s.ModelPath)
	if err != nil {
		return out
	}
	inst, err := findInstall(local, s.ModelPath, d)
	if err != nil {
		return out
	}
	root, err := filepath.Abs(inst.Root)
	if err != nil {
		return out
	}
	for _, f := range inst.Manifest.Files {
		out[filepath.Join(root, filepath.FromSlash(f.Path))] = f.Digest
	}
	return out
}

// removeStale removes the files of a replaced pin (old) that no section's
// pin installs now, so that the directory holds exactly the new version.
// Only files still exactly as installed are removed (recognised by the
// digest cache, or as the cache blob itself); anything changed or unknown
// stays where it is.
func removeStale(cache *client.Cache, old map[string]digest.Digest, claims map[string]map[string]digest.Digest) []string {
	if cache == nil {
		return nil
	}
	var removed []string
	for path, want := range old {
		used := false
		for _, c := range claims {
			if _, ok := c[path]; ok {
				used = true
				break
			}
		}
		if used {
			continue
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		d, ok := cache.LookupDigest(path, fi)
		if !ok {
			bi, err := os.Stat(cache.BlobPath(want))
			ok = err == nil && os.SameFile(fi, bi) && cache.HasBlob(want, fi.Size())
			d = want
		}
		if !ok || d != want {
			continue
		}
		if os.Remove(path) == nil {
			removed = append(removed, path)
		}
	}
	sort.Strings(removed)
	return removed
}
