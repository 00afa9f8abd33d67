package pin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
)

// An install root keeps the raw manifest of every digest synced into it,
// under ROOT/.modelctl/pins/ALG-HEX.json: verify checks its digest against
// the pin and then trusts its file list, so neither the network nor the
// cache of the user who synced is needed to verify.
const pinsDir = "pins"

var errNotInstalled = errors.New("not installed")

// install is a found installation of a pinned digest.
type install struct {
	Root     string
	Manifest *manifests.Manifest
	Raw      []byte
}

func recordPath(root string, d digest.Digest) string {
	return filepath.Join(root, manifests.ReservedDir, pinsDir, string(d.Algorithm())+"-"+d.Encoded()+".json")
}

// findInstall looks for the record of d in the directories above local
// (model_path as a path of this system) and returns the one whose
// manifest places model_path's file exactly at local.
func findInstall(local, modelPath string, d digest.Digest) (*install, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("pin %q: %w", d, err)
	}
	dir := filepath.Dir(local)
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		// A directory artifact is installed into model_path itself.
		dir = local
	}
	for i := 0; i < 64; i++ {
		inst, err := readRecord(dir, d)
		switch {
		case err == nil:
			root, rerr := installRootOf(runtime.GOOS, modelPath, inst.Manifest)
			if rerr == nil && filepath.Clean(filepath.FromSlash(root)) == filepath.Clean(dir) {
				return inst, nil
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return nil, fmt.Errorf("%s at %s: %w", d, local, errNotInstalled)
}

// readRecord reads and checks the record of d in root.
func readRecord(root string, d digest.Digest) (*install, error) {
	p := recordPath(root, d)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, manifests.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(raw) > manifests.MaxManifestSize {
		return nil, fmt.Errorf("%s: over the manifest size limit: tampered? (run modelctl sync)", p)
	}
	if got := d.Algorithm().FromBytes(raw); got != d {
		return nil, fmt.Errorf("%s: the recorded manifest is %s, not the pinned %s: tampered? (run modelctl sync)", p, got, d)
	}
	m, err := manifests.ParseManifest(raw)
	if err != nil {
		if m, err = otherArtifact(root, d, raw); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return &install{Root: root, Manifest: m, Raw: raw}, nil
}

// otherArtifact reads the record of an artifact another tool pushed (a
// ModelKit, ModelPack archive layers, a plain oras artifact): its files
// are its raw layers' and, for archive layers, those the pull unpacked,
// which the install's receipt lists with their digests.
func otherArtifact(root string, d digest.Digest, raw []byte) (*manifests.Manifest, error) {
	cls, err := manifests.Classify(raw, "", manifests.ClassifyOptions{})
	if err != nil {
		return nil, err
	}
	files := cls.Files()
	if cls.HasArchives() {
		rc, err := client.ReadReceipt(root)
		if err != nil || rc.Digest != d {
			return nil, fmt.Errorf("the files unpacked from %s's archive layers are listed in %s, which is missing or names another install (run modelctl sync)",
				d, filepath.Join(root, filepath.FromSlash(client.ReceiptPath)))
		}
		have := map[string]bool{}
		for _, f := range files {
			have[f.Path] = true
		}
		for _, f := range rc.Files {
			if !have[f.Path] {
				if err := manifests.ValidatePath(f.Path); err != nil {
					return nil, fmt.Errorf("receipt of %s: %w", d, err)
				}
				files = append(files, manifests.File{Path: f.Path, Digest: f.Digest, Size: f.Size})
			}
		}
	}
	return &manifests.Manifest{Manifest: cls.Manifest, Files: files}, nil
}

// writeRecord stores the raw manifest of d in root, refusing to write
// through a symbolic link planted in the reserved directory.
func writeRecord(root string, d digest.Digest, raw []byte) error {
	if err := ensurePinsDir(root); err != nil {
		return err
	}
	return writeAtomic(recordPath(root, d), raw)
}

// writeRecordUndoable writes the record of d in root and returns what
// takes it away again, with the directories writing it created, unless
// it was there already.
func writeRecordUndoable(root string, d digest.Digest, raw []byte) (undo func(), err error) {
	var created []string
	for p := root; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) || filepath.Dir(p) == p {
			break
		}
		created = append([]string{p}, created...)
	}
	for _, p := range []string{filepath.Join(root, manifests.ReservedDir), filepath.Join(root, manifests.ReservedDir, pinsDir)} {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			created = append(created, p)
		}
	}
	_, statErr := os.Lstat(recordPath(root, d))
	existed := statErr == nil
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	undo = func() {
		if !existed {
			os.Remove(recordPath(root, d))
		}
		for i := len(created) - 1; i >= 0; i-- {
			os.Remove(created[i]) // only when empty
		}
	}
	if err := writeRecord(root, d, raw); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}
