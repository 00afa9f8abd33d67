package pin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"time"

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
	// InstallCached installs a digest whose manifest is known from the
	// cache alone, without the registry.
	InstallCached(ctx context.Context, ref client.Reference, raw []byte, dir string) (*client.PullResult, error)
	// Adopt links bytes already at an artifact's paths into the cache.
	Adopt(ctx context.Context, dir string, files []manifests.File) ([]string, error)
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
		if _, err := installRootOf(runtime.GOOS, s.ModelPath, art.Manifest); err != nil {
			return "", fmt.Errorf("pin %s: %w", key, err)
		}
		// Where the pin is made is where the application reads: a later
		// sync from another directory is refused (see resolved).
		if rs, err := c.resolved(s); err == nil {
			if err := c.recordAppDir(rs); err != nil {
				return "", fmt.Errorf("pin %s: %w", key, err)
			}
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
	// Restart and Health override the sections' restart and health
	// commands; HealthTimeout their health_timeout.
	Restart, Health string
	HealthTimeout   time.Duration
	// Pins, when set, are digests to install for those sections instead
	// of their pins (a rollback); Keys, when set, limits the sync to those
	// sections.
	Pins map[string]digest.Digest
	Keys []string
	// Why is recorded in the local pin history with each move ("update"
	// by default, "rollback").
	Why string
	// Log, when set, is told what the service commands do as they run.
	Log io.Writer
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
	// FromCache: installed from the local cache and the pin records
	// alone; the registry was not consulted.
	FromCache bool `json:"from_cache,omitempty"`
	// Adopted lists files already in place with the pinned bytes, taken
	// into the cache instead of downloaded; Kept, files in the way with
	// other bytes, moved aside (NAME.modelctl-kept-TIME).
	Adopted []string `json:"adopted,omitempty"`
	Kept    []string `json:"kept,omitempty"`
	// Restart and Health are the service commands run after the switch.
	Restart *CommandResult `json:"restart,omitempty"`
	Health  *CommandResult `json:"health,omitempty"`
	// RolledBack: the service failed with the new model and the section
	// was switched back to Previous.
	RolledBack bool `json:"rolled_back,omitempty"`
}

// Sync installs the pinned artifact of every section into the directory of
// its model_path: files are fetched into the cache and verified before
// they appear (client.Pull), and an installation that is already complete
// is left alone without asking the registry anything, so a second sync
// transfers nothing. A digest whose manifest this host recorded and whose
// blobs are in the cache is installed from there, the registry not
// consulted. With Update, tags are resolved first and the pins of the
// sections installed are rewritten in the file, after their files are in
// place; then the service is restarted and checked (restart, health) and,
// if it fails, every switched section goes back to its previous model, the
// pins back to what they were, and the service is restarted again.
// Sections are independent: each failure is reported and the others
// proceed.
func Sync(ctx context.Context, cfg *Config, p Puller, opts SyncOptions) ([]SyncResult, error) {
	all, err := cfg.Sections()
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no model sections (with %s or %s) in the config", KeyArtifact, KeyDigest)
	}
	var results []SyncResult
	var errs []error
	var secs []Section
	claims := map[string]map[string]digest.Digest{} // section key -> files its pin installs
	for _, s := range all {
		selected := len(opts.Keys) == 0 || slices.Contains(opts.Keys, s.Key)
		if s.ModelPath != "" {
			rs, err := cfg.resolved(s)
			if err != nil {
				if selected {
					errs = append(errs, fmt.Errorf("sync %s: %w", s.Key, err))
				}
				continue
			}
			s = rs
		}
		// Every section's files count, selected or not: a file another
		// section uses is never removed as stale.
		claims[s.Key] = installedFiles(s, s.Digest)
		if selected {
			secs = append(secs, s)
		}
	}
	type switched struct {
		sec Section
		res int // index in results
	}
	var changed []switched
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
		// Best effort: a config in a read-only directory still syncs, it
		// only loses the check against running from elsewhere.
		_ = cfg.recordAppDir(s)
		if res.Digest != s.Digest {
			if err := cfg.SetPin(s.Key, s.Artifact, res.Digest); err != nil {
				// The file cannot hold the new pin: the old model goes back.
				errs = append(errs, fmt.Errorf("sync %s: %w", s.Key, err))
				if _, berr := switchBack(ctx, p, s, opts); berr != nil {
					errs = append(errs, fmt.Errorf("sync %s: switch back to %s: %w", s.Key, s.Digest, berr))
				}
				continue
			}
			res.Previous = s.Digest
			changed = append(changed, switched{s, len(results)})
		}
		results = append(results, *res)
	}
	if len(changed) == 0 {
		return results, errors.Join(errs...)
	}
	if cfg.Path != "" {
		if err := cfg.Save(); err != nil {
			// The files must not disagree with the pins: switch back.
			errs = append(errs, err)
			for _, ch := range changed {
				if _, berr := switchBack(ctx, p, ch.sec, opts); berr != nil {
					errs = append(errs, fmt.Errorf("sync %s: switch back to %s: %w", ch.sec.Key, ch.sec.Digest, berr))
				}
				results[ch.res].RolledBack = true
			}
			return results, errors.Join(errs...)
		}
	}

	// One service may carry several sections: each distinct one is
	// restarted and checked once, after all its sections are switched.
	groups := map[Service][]switched{}
	var order []Service
	for _, ch := range changed {
		svc, err := serviceOf(ch.sec, opts)
		if err != nil {
			// Still checked, with the default timeout: a typo must not
			// turn the health check off.
			errs = append(errs, fmt.Errorf("sync %s: %w", ch.sec.Key, err))
		}
		if _, ok := groups[svc]; !ok {
			order = append(order, svc)
		}
		groups[svc] = append(groups[svc], ch)
	}
	ok := map[string]bool{}
	for _, svc := range order {
		group := groups[svc]
		if svc.empty() {
			for _, ch := range group {
				ok[ch.sec.Key] = true
			}
			continue
		}
		restart := svc.restart(ctx)
		logCommand(opts.Log, "restart", restart)
		var health *CommandResult
		if restart == nil || restart.OK {
			health = svc.check(ctx)
			logCommand(opts.Log, "health", health)
		}
		for _, ch := range group {
			results[ch.res].Restart, results[ch.res].Health = restart, health
		}
		if (restart == nil || restart.OK) && (health == nil || health.OK) {
			for _, ch := range group {
				ok[ch.sec.Key] = true
			}
			continue
		}
		// The new model does not serve: every section of this service
		// goes back, its pin too, and the service is restarted on it.
		he := &HealthError{Restart: restart, Health: health, RolledBack: true}
		for _, ch := range group {
			he.Keys = append(he.Keys, ch.sec.Key)
			if ch.sec.Digest == "" {
				he.RolledBack, he.Cause = false, fmt.Errorf("%s had no model before this sync", ch.sec.Key)
				continue
			}
			if _, err := switchBack(ctx, p, ch.sec, opts); err != nil {
				he.RolledBack, he.Cause = false, err
				continue
			}
			if err := cfg.SetPin(ch.sec.Key, ch.sec.Artifact, ch.sec.Digest); err != nil {
				he.RolledBack, he.Cause = false, err
				continue
			}
			results[ch.res].RolledBack = true
			if root := results[ch.res].Root; root != "" {
				_ = appendPinMove(root, PinMove{Time: time.Now().UTC(), Config: cfg.Path, Key: ch.sec.Key, From: results[ch.res].Digest, To: ch.sec.Digest, Why: "health"})
			}
		}
		if cfg.Path != "" {
			if err := cfg.Save(); err != nil {
				he.RolledBack, he.Cause = false, err
			}
		}
		he.AfterRestart = svc.restart(ctx)
		logCommand(opts.Log, "restart after switching back", he.AfterRestart)
		if he.AfterRestart == nil || he.AfterRestart.OK {
			he.AfterHealth = svc.check(ctx)
			logCommand(opts.Log, "health after switching back", he.AfterHealth)
		}
		errs = append(errs, fmt.Errorf("sync: %w", he))
	}
	why := opts.Why
	if why == "" {
		why = "update"
	}
	for _, ch := range changed {
		if !ok[ch.sec.Key] {
			continue
		}
		r := &results[ch.res]
		if r.Root != "" {
			if err := appendPinMove(r.Root, PinMove{Time: time.Now().UTC(), Config: cfg.Path, Key: ch.sec.Key, From: ch.sec.Digest, To: r.Digest, Why: why}); err != nil {
				errs = append(errs, fmt.Errorf("sync %s: %w", ch.sec.Key, err))
			}
		}
		old := claims[ch.sec.Key]
		claims[ch.sec.Key] = installedFiles(ch.sec, r.Digest)
		r.Removed = removeStale(p.Cache(), old, claims)
	}
	return results, errors.Join(errs...)
}

// switchBack installs a section's pinned digest again (its previous
// model, after a switch that has to be undone): from the cache when it
// can, which the previous install normally left complete.
func switchBack(ctx context.Context, p Puller, s Section, opts SyncOptions) (*SyncResult, error) {
	if s.Digest == "" {
		return nil, fmt.Errorf("no previous pin")
	}
	o := opts
	o.Update, o.Pins = false, map[string]digest.Digest{s.Key: s.Digest}
	return syncSection(ctx, p, s, o, false)
}

// serviceOf is the service of a section: its restart, health and
// health_timeout, the options' when set; commands run in the
// application's directory.
func serviceOf(s Section, opts SyncOptions) (Service, error) {
	svc := Service{Restart: s.Restart, Health: s.Health, Dir: s.base}
	if opts.Restart != "" {
		svc.Restart = opts.Restart
	}
	if opts.Health != "" {
		svc.Health = opts.Health
	}
	svc.Timeout = opts.HealthTimeout
	if svc.Timeout == 0 && s.HealthTimeout != "" {
		d, err := time.ParseDuration(s.HealthTimeout)
		if err != nil || d <= 0 {
			return svc, fmt.Errorf("%s %q: want a duration such as 90s", KeyHealthTimeout, s.HealthTimeout)
		}
		svc.Timeout = d
	}
	if svc.Dir == "" {
		svc.Dir = filepath.Dir(filepath.FromSlash(s.ModelPath))
	}
	return svc, nil
}

func logCommand(w io.Writer, what string, r *CommandResult) {
	if w == nil || r == nil {
		return
	}
	state := "ok"
	if !r.OK {
		state = "failed: " + r.Error
	}
	fmt.Fprintf(w, "%s: %s: %s (%s)\n", what, r.Command, state, r.Took.Round(time.Millisecond))
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
	case opts.Pins[s.Key] != "":
		want = opts.Pins[s.Key]
	case opts.Update && ref.Digest == "" && ref.Tag != "":
		art, err = p.Resolve(ctx, ref)
		if err != nil {
			if want != "" && errors.Is(err, client.ErrUnreachable) {
				return nil, fmt.Errorf("%w (sync without --update installs the pin, and rollback CONFIG goes back, from the local cache without the registry)", err)
			}
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
	// A digest this host installed before (its manifest is in the pin
	// records) whose blobs are all in the cache is installed from there:
	// a rollback or a re-sync works with the registry down.
	if inst, err := findInstall(local, s.ModelPath, want); err == nil && art == nil &&
		cached(p.Cache(), inst.Manifest.Files) && (!s.RequireSignature || installedSigned(inst.Root, want, s)) {
		cart := &client.Artifact{Reference: pinned, Digest: want, Raw: inst.Raw, Manifest: inst.Manifest}
		if err := checkCPU(cart, opts.CPU); err != nil {
			return nil, err
		}
		// The model runs here from the cache too, before the switch (err
		// is nil here).
		if check {
			err = stageAndCheck(ctx, p, cart, opts.Check, func(dir string) (*client.PullResult, error) {
				return p.InstallCached(ctx, pinned, inst.Raw, dir)
			})
			res.Checked = err == nil
		}
		var pr *client.PullResult
		if err == nil {
			pr, err = p.InstallCached(ctx, pinned, inst.Raw, inst.Root)
		}
		if err == nil {
			recordDigests(p.Cache(), pr.Dir, pr.Files)
			res.Status, res.Root, res.FromCache = "installed", pr.Dir, true
			res.Files, res.Size, res.Kept = len(pr.Files), pr.Size, pr.Kept
			return res, nil
		}
		if !errors.Is(err, client.ErrNotCached) && !errors.Is(err, client.ErrDigestMismatch) {
			return nil, err
		}
		res.Checked = false
		// A blob went missing or bad in the cache: fetch it.
	}
	if art == nil || art.Digest != want {
		if art, err = p.Resolve(ctx, pinned); err != nil {
			return nil, err
		}
	}
	if err := checkCPU(art, opts.CPU); err != nil {
		return nil, err
	}
	root, err := installRootOf(runtime.GOOS, s.ModelPath, art.Manifest)
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
	// Bytes already where the model goes (copied by hand, say) that are
	// the pinned ones are taken into the cache instead of downloaded.
	if res.Adopted, err = p.Adopt(ctx, root, art.Manifest.Files); err != nil {
		return nil, err
	}
	var staged int64
	if check {
		err := stageAndCheck(ctx, p, art, opts.Check, func(dir string) (*client.PullResult, error) {
			pr, err := p.Pull(ctx, pinned, dir)
			if pr != nil {
				staged = pr.Transferred
			}
			return pr, err
		})
		if err != nil {
			return nil, err
		}
		res.Checked = true
	}
	// The record goes in first, so that nothing can fail after the files
	// are switched; a failed pull takes it (and what it created) away.
	undo, err := writeRecordUndoable(root, want, art.Raw)
	if err != nil {
		return nil, fmt.Errorf("record the installation: %w", err)
	}
	pr, err := p.Pull(ctx, pinned, root)
	if err == nil && pr.Digest != want {
		err = fmt.Errorf("pulled %s, want %s", pr.Digest, want)
	}
	if err != nil {
		undo()
		return nil, err
	}
	pr.Transferred += staged
	recordDigests(p.Cache(), pr.Dir, pr.Files)
	if keyID != "" {
		// Verified before the pull: recorded with the key that did.
		if err := writeSigned(root, want, keyID); err != nil {
			return nil, fmt.Errorf("record the signature: %w", err)
		}
	}
	res.Status, res.Root = "installed", pr.Dir
	res.Files, res.Size, res.Transferred, res.Kept = len(pr.Files), pr.Size, pr.Transferred, pr.Kept
	return res, nil
}

// cached reports whether the cache holds every blob of files.
func cached(c *client.Cache, files []manifests.File) bool {
	if c == nil {
		return false
	}
	for _, f := range files {
		if !c.HasBlob(f.Digest, f.Size) {
			return false
		}
	}
	return true
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
		got, err := client.HashFile(ctx, path, f.Digest.Algorithm())
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
