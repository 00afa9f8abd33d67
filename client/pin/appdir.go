package pin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile"
)

// KeyAppDir names the application's directory in a section: relative
// model_paths are relative to it, whatever directory modelctl runs in. A
// relative app_dir is relative to the config file.
const KeyAppDir = "app_dir"

// appDirsFile records, beside a config file, the directory each section's
// relative model_path was resolved against when it was pinned or synced,
// so that a later run from elsewhere is an error instead of a second
// install where the application does not look.
const appDirsFile = "app-dirs.json"

// resolved returns s with model_path made absolute: against c.Dir (-C)
// when set, else the section's app_dir, else the working directory, which
// must then be the one the section was pinned from (if that is known).
func (c *Config) resolved(s Section) (Section, error) {
	vol, rest, err := splitModelPath(runtime.GOOS, s.ModelPath)
	if err != nil {
		return s, fmt.Errorf("section %q: %w", s.Key, err)
	}
	if strings.HasPrefix(rest, "/") {
		s.base = ""
		return s, nil // absolute: nothing to resolve
	}
	if vol != "" {
		return s, fmt.Errorf("section %q: model_path %q has a drive but no root", s.Key, s.ModelPath)
	}
	var base string
	switch {
	case c.Dir != "":
		base, err = filepath.Abs(c.Dir)
	case s.AppDir != "":
		base = filepath.FromSlash(s.AppDir)
		if !filepath.IsAbs(base) {
			base = filepath.Join(c.configDir(), base)
		}
		base, err = filepath.Abs(base)
	default:
		base, err = os.Getwd()
		if err == nil {
			if rec := c.recordedAppDir(s.Key); rec != "" && !samePath(rec, base) {
				return s, c.elsewhereError(s, rec, base)
			}
		}
	}
	if err != nil {
		return s, fmt.Errorf("section %q: application directory: %w", s.Key, err)
	}
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		return s, fmt.Errorf("section %q: the application directory %s is not a directory (check -C or %s)", s.Key, base, KeyAppDir)
	}
	s.base = base
	s.relPath = s.ModelPath
	s.ModelPath = filepath.ToSlash(base) + "/" + rest
	return s, nil
}

func (c *Config) elsewhereError(s Section, rec, wd string) error {
	hint := rec
	if rel, err := filepath.Rel(c.configDir(), rec); err == nil {
		hint = filepath.ToSlash(rel)
	}
	return fmt.Errorf("section %q: model_path %q is relative and was pinned for the application in %s, but modelctl runs in %s, where it would install a second copy the application does not read: run it from %s, or pass -C %s, or add `%s: %s` to the section (relative to the config file)",
		s.Key, s.relPath0(), rec, wd, rec, rec, KeyAppDir, hint)
}

func (s Section) relPath0() string {
	if s.relPath != "" {
		return s.relPath
	}
	return s.ModelPath
}

func samePath(a, b string) bool {
	if a == b {
		return true
	}
	ea, err1 := filepath.EvalSymlinks(a)
	eb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ea == eb
}

func (c *Config) configDir() string {
	if c.Path == "" {
		wd, _ := os.Getwd()
		return wd
	}
	d, err := filepath.Abs(filepath.Dir(c.Path))
	if err != nil {
		return filepath.Dir(c.Path)
	}
	return d
}

func (c *Config) appDirsPath() string {
	return filepath.Join(c.configDir(), manifests.ReservedDir, appDirsFile)
}

// appDirs reads the recorded application directories: config file name
// -> section key -> directory.
func (c *Config) appDirs() map[string]map[string]string {
	out := map[string]map[string]string{}
	if c.Path == "" {
		return out
	}
	b, err := os.ReadFile(c.appDirsPath())
	if err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

func (c *Config) recordedAppDir(key string) string {
	if c.Path == "" {
		return ""
	}
	return c.appDirs()[filepath.Base(c.Path)][key]
}

// recordAppDir remembers the directory a relative model_path of section
// s was resolved against (nothing for absolute paths or an app_dir, which
// say it themselves).
func (c *Config) recordAppDir(s Section) error {
	if c.Path == "" || s.base == "" || (s.AppDir != "" && c.Dir == "") {
		return nil
	}
	all := c.appDirs()
	name := filepath.Base(c.Path)
	if all[name] == nil {
		all[name] = map[string]string{}
	}
	if all[name][s.Key] == s.base {
		return nil
	}
	all[name][s.Key] = s.base
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(c.appDirsPath())
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a link?): refusing to write through it", dir)
	} else if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("record the application directory: %w", err)
		}
	}
	if err := writeAtomic(c.appDirsPath(), b); err != nil {
		return fmt.Errorf("record the application directory: %w", err)
	}
	return nil
}

// installRootOf is installRoot for an artifact's manifest: a directory
// artifact installs into model_path itself (modelfile.InstallDir).
func installRootOf(goos, modelPath string, m *manifests.Manifest) (string, error) {
	if m != nil && len(m.Annotations) > 0 {
		vol, rest, err := splitModelPath(goos, modelPath)
		if err != nil {
			return "", err
		}
		p := vol + rest
		if d := modelfile.InstallDir(p, m.Annotations); filepath.ToSlash(d) == filepath.ToSlash(filepath.Clean(p)) {
			return p, nil
		}
	}
	var files []manifests.File
	if m != nil {
		files = m.Files
	}
	root, _, err := installRoot(goos, modelPath, files)
	if err != nil && hasArchives(m) {
		// An archive layer's files are known once it is unpacked; they
		// carry paths relative to the model's directory, which is taken to
		// be model_path's.
		vol, rest, serr := splitModelPath(goos, modelPath)
		if serr != nil {
			return "", serr
		}
		return filepath.Dir(vol + rest), nil
	}
	return root, err
}

// hasArchives reports whether an artifact has archive layers (tar,
// tar+gzip, tar+zstd), whose files a pull unpacks.
func hasArchives(m *manifests.Manifest) bool {
	if m == nil {
		return false
	}
	for _, l := range m.Layers {
		if _, format, _, ok := manifests.ParseLayerMediaType(l.MediaType); ok && format == manifests.LayerTar {
			return true
		}
	}
	return false
}
