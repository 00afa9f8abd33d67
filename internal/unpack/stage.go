package unpack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/manifests"
)

// Stage is a directory on the target's filesystem that archives are
// unpacked into; its files move into the target only on Commit. It lives
// in the target's reserved directory (manifests.ReservedDir) when the
// target exists, so that it is on the same filesystem even when the
// target is a mount point, and beside the target otherwise.
type Stage struct {
	target string
	dir    string
	// reserved is the target's reserved directory when the stage created it.
	reserved string
	claims   map[string]claimed
	dirs     []string
	files    []File
	// unpacked is the bytes of the files of the archives unpacked so far.
	unpacked int64
	done     bool
}

// NewStage starts a stage for installing into target.
func NewStage(target string) (*Stage, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, fmt.Errorf("stage for %s: %w", target, err)
	}
	s := &Stage{target: abs, claims: map[string]claimed{}}
	parent, prefix := filepath.Dir(abs), "."+filepath.Base(abs)+".unpack-"
	// The target itself may be a link to a directory (a models directory
	// kept elsewhere); only what is inside it must not be.
	fi, err := os.Stat(abs)
	switch {
	case err == nil && fi.IsDir():
		parent, prefix = filepath.Join(abs, manifests.ReservedDir), "unpack-"
		rfi, err := os.Lstat(parent)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(parent, 0o755); err != nil {
				return nil, fmt.Errorf("stage for %s: %w", target, err)
			}
			s.reserved = parent
		case err != nil:
			return nil, fmt.Errorf("stage for %s: %w", target, err)
		case !rfi.IsDir():
			return nil, fmt.Errorf("stage for %s: %s is not a directory", target, parent)
		}
	case err == nil:
		return nil, fmt.Errorf("stage for %s: it exists and is not a directory", target)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("stage for %s: %w", target, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.dir = filepath.Join(parent, prefix+hex.EncodeToString(b[:]))
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		s.removeReserved()
		return nil, fmt.Errorf("stage for %s: %w", target, err)
	}
	return s, nil
}

// Dir is the staging directory (for tests and diagnostics).
func (s *Stage) Dir() string { return s.dir }

// Dirs are the directories the archives declared (also empty ones),
// relative to the target, slash-separated, in archive order.
func (s *Stage) Dirs() []string { return append([]string(nil), s.dirs...) }

// Files are the files unpacked so far, in archive order.
func (s *Stage) Files() []File { return append([]File(nil), s.files...) }

// Claim reserves a path that another layer (a raw file) installs, so that
// no archive entry may write it.
func (s *Stage) Claim(p string) error {
	if err := manifests.ValidatePath(p); err != nil {
		return err
	}
	return s.claim(p, false)
}

// mkdirs creates rel (a validated path) and its parents in the stage and
// remembers it, so that an empty directory of an archive is installed too.
func (s *Stage) mkdirs(rel string) error {
	if err := os.MkdirAll(filepath.Join(s.dir, filepath.FromSlash(rel)), 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", rel, err)
	}
	s.dirs = append(s.dirs, rel)
	return nil
}

// Commit moves every unpacked file into the target, replacing a file
// already there, and makes the moves durable. It first checks that every
// path can be written (no directory where a file goes, no link or file
// where a directory goes), so that a refusal leaves the target as it was.
func (s *Stage) Commit() error {
	if s.done {
		return fmt.Errorf("commit into %s: the stage was already committed or discarded", s.target)
	}
	for _, f := range s.files {
		if err := s.checkDest(f.Path); err != nil {
			_ = s.Discard()
			return err
		}
	}
	if err := os.MkdirAll(s.target, 0o755); err != nil {
		_ = s.Discard()
		return fmt.Errorf("commit into %s: %w", s.target, err)
	}
	touched := map[string]bool{s.target: true}
	for _, d := range s.dirs {
		if err := atomicfile.MkdirNoLinks(s.target, d, nil); err != nil {
			_ = s.Discard()
			return fmt.Errorf("commit into %s: %w", s.target, err)
		}
	}
	for _, f := range s.files {
		parent := ""
		if i := strings.LastIndexByte(f.Path, '/'); i >= 0 {
			parent = f.Path[:i]
			if err := atomicfile.MkdirNoLinks(s.target, parent, nil); err != nil {
				_ = s.Discard()
				return fmt.Errorf("commit into %s: %w", s.target, err)
			}
		}
		src := filepath.Join(s.dir, filepath.FromSlash(f.Path))
		dest := filepath.Join(s.target, filepath.FromSlash(f.Path))
		if err := atomicfile.Rename(src, dest); err != nil {
			_ = s.Discard()
			return fmt.Errorf("commit %s into %s: %w", f.Path, s.target, err)
		}
		touched[filepath.Dir(dest)] = true
	}
	dirs := make([]string, 0, len(touched))
	for d := range touched {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	// Concurrently, as the files were synced: the renames of a layer of
	// many directories are made durable by shared journal commits.
	if err := parallel(dirs, atomicfile.SyncDir); err != nil {
		_ = s.Discard()
		return fmt.Errorf("commit into %s: %w", s.target, err)
	}
	_ = atomicfile.SyncDir(filepath.Dir(s.target))
	return s.Discard()
}

// checkDest refuses a destination that is a directory, or whose parents
// in the target include a symbolic link or a file.
func (s *Stage) checkDest(rel string) error {
	cur := s.target
	elems := strings.Split(rel, "/")
	for i, e := range elems {
		cur = filepath.Join(cur, e)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("commit %s into %s: %w", rel, s.target, err)
		}
		last := i == len(elems)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0 && !last:
			return fmt.Errorf("commit %s into %s: %s is a symbolic link: refusing to install through it", rel, s.target, cur)
		case last && fi.IsDir():
			return fmt.Errorf("commit %s into %s: %s is a directory", rel, s.target, cur)
		case !last && !fi.IsDir():
			return fmt.Errorf("commit %s into %s: %s exists and is not a directory", rel, s.target, cur)
		}
	}
	return nil
}

// Discard removes the stage and what it holds; the target is left as it
// was. It may be called more than once.
func (s *Stage) Discard() error {
	if s.done {
		return nil
	}
	s.done = true
	err := os.RemoveAll(s.dir)
	s.removeReserved()
	if err != nil {
		return fmt.Errorf("remove stage %s: %w", s.dir, err)
	}
	return nil
}

// removeReserved removes the reserved directory the stage created, when
// nothing else has been put there meanwhile.
func (s *Stage) removeReserved() {
	if s.reserved != "" {
		_ = os.Remove(s.reserved)
	}
}
