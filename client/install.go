package client

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/manifests"
)

// ReceiptPath is where a pull records what it installed, relative to the
// target directory (inside manifests.ReservedDir, which no layer may use).
const ReceiptPath = manifests.ReservedDir + "/receipt.json"

// Receipt records an installation.
type Receipt struct {
	Reference   string        `json:"reference"`
	Digest      digest.Digest `json:"digest"`
	InstalledAt time.Time     `json:"installedAt"`
	Files       []ReceiptFile `json:"files"`
}

// ReceiptFile is one installed file.
type ReceiptFile struct {
	Path   string        `json:"path"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// ReadReceipt reads the receipt of an installation directory.
func ReadReceipt(dir string) (*Receipt, error) {
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ReceiptPath)))
	if err != nil {
		return nil, err
	}
	var rc Receipt
	if err := json.Unmarshal(b, &rc); err != nil {
		return nil, fmt.Errorf("receipt in %s: %w", dir, err)
	}
	return &rc, nil
}

func writeReceipt(dir string, rc *Receipt) error {
	b, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return err
	}
	rdir := filepath.Join(dir, manifests.ReservedDir)
	if err := mkdirNoLinks(dir, manifests.ReservedDir); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(rdir, "receipt.json"), b, 0o644, true); err != nil {
		return fmt.Errorf("write receipt: %w", Explain(err, ""))
	}
	return nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// mkdirNoLinks creates root/rel directory by directory, refusing to go
// through anything that is not a real directory (a symlink planted in the
// target could otherwise redirect a write outside it).
func mkdirNoLinks(root, rel string) error {
	cur := root
	for _, elem := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, elem)
		fi, err := os.Lstat(cur)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: refusing to install through it", cur)
		case err == nil:
			return fmt.Errorf("%s exists and is not a directory", cur)
		case !isNotExist(err):
			return err
		}
		if err := os.Mkdir(cur, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create %s: %w", cur, Explain(err, ""))
		}
	}
	return nil
}

// linkThreshold is the size from which installs hardlink the cache blob.
const linkThreshold = 4 << 20

// install places verified cache blobs at their paths under dir.
func (c *Client) install(dir string, files []manifests.File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Explain(err, "")
	}
	for _, f := range files {
		if err := c.installFile(dir, f); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) installFile(dir string, f manifests.File) error {
	// Validated again here: install must be safe whatever called it.
	if err := manifests.ValidatePath(f.Path); err != nil {
		return err
	}
	parentRel := ""
	if i := strings.LastIndexByte(f.Path, '/'); i >= 0 {
		parentRel = f.Path[:i]
		if err := mkdirNoLinks(dir, parentRel); err != nil {
			return err
		}
	}
	dest := filepath.Join(dir, filepath.FromSlash(f.Path))
	parent := filepath.Dir(dest)
	src := c.cache.BlobPath(f.Digest)
	c.cache.touchBlob(f.Digest)
	if fi, err := os.Lstat(dest); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", dest)
		}
		if si, err := os.Stat(src); err == nil && fi.Mode().IsRegular() && os.SameFile(fi, si) {
			return nil // already this blob
		}
	}
	tmp := filepath.Join(parent, ".modelctl-tmp-"+randomSuffix())
	// Large files (weights) are hardlinked so a model is not stored twice;
	// small ones (the graph, docs) are copied, since tools such as onnx's
	// shape inference rewrite a graph in place, which through a link would
	// rewrite the cache.
	linked := f.Size >= linkThreshold && os.Link(src, tmp) == nil
	if !linked {
		// Small, or another filesystem, or one without hardlinks: copy.
		if err := copyFile(src, tmp); err != nil {
			return fmt.Errorf("install %s: %w", f.Path, err)
		}
	}
	// rename replaces a symlink at dest, never its target.
	if err := atomicfile.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", f.Path, Explain(err, ""))
	}
	_ = atomicfile.SyncDir(parent)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return Explain(err, "")
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy %s: %w", dst, Explain(err, ""))
	}
	return nil
}
