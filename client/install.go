package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

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

// writeReceipt writes the receipt as the last step of the install.
func (tx *installTx) writeReceipt(dir string, rc *Receipt) error {
	b, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return err
	}
	rdir := filepath.Join(dir, manifests.ReservedDir)
	if err := tx.mkdirNoLinks(dir, manifests.ReservedDir); err != nil {
		return err
	}
	if err := fault("receipt", rdir); err != nil {
		return fmt.Errorf("write receipt: %w", err)
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

// linkThreshold is the size from which installs hardlink the cache blob.
const linkThreshold = 4 << 20

// KeptSuffix marks a file that an install found at a destination with
// bytes that neither the new artifact nor the cache holds: it is moved
// aside under NAME + KeptSuffix + TIME, never overwritten.
const KeptSuffix = ".modelctl-kept-"

// installFault, when set (tests only), is asked before every step of an
// install that changes the target; an error it returns is that step
// failing, and the install must undo every earlier step.
var installFault func(step, path string) error

func fault(step, path string) error {
	if installFault == nil {
		return nil
	}
	return installFault(step, path)
}

// installTx is an installation in progress. Every file is staged beside
// its destination (a link of the cache blob, or a fsynced copy) before any
// destination is switched, and each replaced file is kept under a second
// name until the whole set is switched, so a failure at any step (a
// refused path, a full disk, a receipt that cannot be written) puts every
// file back as it was and removes the directories the install created.
type installTx struct {
	c       *Client
	dir     string
	created []string // directories created, in creation order
	steps   []*txFile
	stamp   string
	// installed is what the receipt in dir says the previous install put
	// there: path -> digest.
	installed map[string]digest.Digest
	// Kept lists the files found with unknown bytes, moved aside.
	Kept []string
}

type txFile struct {
	f      manifests.File
	dest   string
	tmp    string // staged new content; "" once renamed (or when skipped)
	bak    string // the previous file under a second name, "" when none
	known  bool   // the previous bytes are a blob the cache holds, or modelctl's install
	moved  bool   // bak was made by renaming dest (no hardlinks here)
	placed bool   // tmp is at dest
}

// install places verified cache blobs at their paths under dir, all or
// nothing; the returned transaction is committed (call finish) or undone
// (rollback) by the caller, after whatever else belongs to the install
// (the receipt) has been written.
func (c *Client) install(ctx context.Context, dir string, files []manifests.File, arch *archiveSet) (*installTx, error) {
	tx := &installTx{c: c, dir: dir, stamp: time.Now().UTC().Format("20060102T150405"), installed: map[string]digest.Digest{}}
	if rc, err := ReadReceipt(dir); err == nil {
		for _, f := range rc.Files {
			tx.installed[f.Path] = f.Digest
		}
	}
	if err := tx.mkdirAll(dir); err != nil {
		tx.rollback()
		return nil, err
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			tx.rollback()
			return nil, err
		}
		if err := tx.stage(ctx, f, ""); err != nil {
			tx.rollback()
			return nil, err
		}
	}
	if arch != nil {
		// The archives' files, unpacked and verified in a stage on the
		// target's filesystem, are switched with the raw files, under the
		// same rules: a replaced file keeps a second name until the
		// receipt is written, and any failure puts everything back.
		for _, d := range arch.stage.Dirs() {
			if err := tx.mkdirNoLinks(dir, d); err != nil {
				tx.rollback()
				return nil, err
			}
		}
		for _, u := range arch.files {
			if err := ctx.Err(); err != nil {
				tx.rollback()
				return nil, err
			}
			f := manifests.File{Path: u.Path, Digest: u.Digest, Size: u.Size}
			if err := tx.stage(ctx, f, filepath.Join(arch.stage.Dir(), filepath.FromSlash(u.Path))); err != nil {
				tx.rollback()
				return nil, err
			}
		}
	}
	for _, s := range tx.steps {
		if err := tx.place(s); err != nil {
			tx.rollback()
			return nil, err
		}
	}
	return tx, nil
}

// mkdirAll creates dir and its missing parents, remembering them.
func (tx *installTx) mkdirAll(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", d)
			}
			break
		}
		if !isNotExist(err) {
			return Explain(err, "")
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := tx.mkdir(missing[i]); err != nil {
			return err
		}
	}
	return nil
}

func (tx *installTx) mkdir(d string) error {
	if err := fault("mkdir", d); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	if err := os.Mkdir(d, 0o755); err != nil {
		if os.IsExist(err) {
			return nil
		}
		return fmt.Errorf("create %s: %w", d, Explain(err, ""))
	}
	tx.created = append(tx.created, d)
	return nil
}

// mkdirNoLinks creates root/rel as atomicfile.MkdirNoLinks does,
// recording the directories it creates for rollback.
func (tx *installTx) mkdirNoLinks(root, rel string) error {
	if err := atomicfile.MkdirNoLinks(root, rel, tx.mkdir); err != nil {
		return fmt.Errorf("%w (nothing was changed)", err)
	}
	return nil
}

// stage puts the new content of one file beside its destination: the
// cache's blob f.Digest, or, when staged is set, the file there (an
// archive's file, verified as it was unpacked), moved.
func (tx *installTx) stage(ctx context.Context, f manifests.File, staged string) error {
	c := tx.c
	// Validated again here: install must be safe whatever called it.
	if err := manifests.ValidatePath(f.Path); err != nil {
		return err
	}
	if i := strings.LastIndexByte(f.Path, '/'); i >= 0 {
		if err := tx.mkdirNoLinks(tx.dir, f.Path[:i]); err != nil {
			return err
		}
	}
	s := &txFile{f: f, dest: filepath.Join(tx.dir, filepath.FromSlash(f.Path))}
	src := c.cache.BlobPath(f.Digest)
	if staged == "" {
		c.cache.touchBlob(f.Digest)
	}
	if fi, err := os.Lstat(s.dest); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory (nothing was changed)", s.dest)
		}
		if fi.Mode().IsRegular() {
			if si, err := os.Stat(src); err == nil && os.SameFile(fi, si) {
				return nil // already this blob
			}
			d, err := c.fileDigest(ctx, s.dest, fi)
			if err != nil {
				return fmt.Errorf("read %s, which is in the way: %w", s.dest, err)
			}
			if d == f.Digest {
				return nil // already these bytes: kept as they are
			}
			// Bytes the cache holds, or that the previous install put
			// there unchanged (an archive's file), are not the user's:
			// they are dropped once the install succeeds.
			s.known = c.cache.HasBlob(d, fi.Size()) || tx.installed[f.Path] == d
		}
		s.bak = freeName(s.dest + KeptSuffix + tx.stamp)
	} else if !isNotExist(err) {
		return fmt.Errorf("install %s: %w", f.Path, err)
	}
	tmp := filepath.Join(filepath.Dir(s.dest), ".modelctl-tmp-"+randomSuffix())
	if err := fault("stage", s.dest); err != nil {
		return fmt.Errorf("install %s: %w", f.Path, err)
	}
	if staged != "" {
		if err := atomicfile.Rename(staged, tmp); err != nil {
			return fmt.Errorf("install %s: %w", f.Path, Explain(err, ""))
		}
		s.tmp = tmp
		tx.steps = append(tx.steps, s)
		return nil
	}
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
	s.tmp = tmp
	tx.steps = append(tx.steps, s)
	return nil
}

// place switches one destination to its staged content, keeping the
// previous file under its backup name.
func (tx *installTx) place(s *txFile) error {
	if s.bak != "" {
		if err := fault("backup", s.dest); err != nil {
			return fmt.Errorf("install %s: keep %s: %w", s.f.Path, s.dest, err)
		}
		// A second name for the old file keeps dest in place until the
		// rename below replaces it; without hardlinks it moves aside.
		if err := os.Link(s.dest, s.bak); err != nil {
			if _, serr := os.Lstat(s.bak); serr == nil {
				// Taken since stage looked (another install): never
				// replace a kept file.
				s.bak = freeName(s.bak)
				err = os.Link(s.dest, s.bak)
			}
			if err != nil {
				if _, serr := os.Lstat(s.bak); serr == nil {
					return fmt.Errorf("install %s: keep %s: %s exists", s.f.Path, s.dest, s.bak)
				}
				if err := atomicfile.Rename(s.dest, s.bak); err != nil {
					return fmt.Errorf("install %s: keep %s: %w", s.f.Path, s.dest, Explain(err, ""))
				}
				s.moved = true
			}
		}
	}
	if err := fault("switch", s.dest); err != nil {
		return fmt.Errorf("install %s: %w", s.f.Path, err)
	}
	// rename replaces a symlink at dest, never its target.
	if err := atomicfile.Rename(s.tmp, s.dest); err != nil {
		return fmt.Errorf("install %s: %w", s.f.Path, Explain(err, ""))
	}
	s.tmp, s.placed = "", true
	_ = atomicfile.SyncDir(filepath.Dir(s.dest))
	return nil
}

// rollback puts every destination back as it was, removes what was
// staged and the directories the install created.
func (tx *installTx) rollback() {
	for i := len(tx.steps) - 1; i >= 0; i-- {
		s := tx.steps[i]
		if s.tmp != "" {
			os.Remove(s.tmp)
		}
		switch {
		case s.bak != "" && (s.placed || s.moved):
			_ = atomicfile.Rename(s.bak, s.dest)
		case s.bak != "":
			removeName(s.bak) // a second name only; dest was never replaced
		case s.placed:
			os.Remove(s.dest)
		}
		_ = atomicfile.SyncDir(filepath.Dir(s.dest))
	}
	for i := len(tx.created) - 1; i >= 0; i-- {
		os.Remove(tx.created[i]) // only empty ones go
	}
	tx.steps, tx.created = nil, nil
}

// finish ends a successful install: previous files whose bytes the cache
// holds are dropped; any other is kept, moved aside, and listed in Kept.
func (tx *installTx) finish() {
	for _, s := range tx.steps {
		if s.bak == "" {
			continue
		}
		if s.known {
			removeName(s.bak)
			continue
		}
		tx.Kept = append(tx.Kept, s.bak)
	}
	sort.Strings(tx.Kept)
}

// freeName returns name, or name-2, name-3, ... when it is taken: two
// installs within one second must not share a kept name (the second would
// replace the file the first kept).
func freeName(name string) string {
	for i := 1; i < 1000; i++ {
		n := name
		if i > 1 {
			n = fmt.Sprintf("%s-%d", name, i)
		}
		if _, err := os.Lstat(n); isNotExist(err) {
			return n
		}
	}
	return name + "-" + randomSuffix()
}

// removeName removes one name of a file. Windows refuses to remove a
// read-only file (installed weights, which are links of read-only cache
// blobs) until the attribute is gone; Linux removes the name regardless.
func removeName(path string) {
	if err := os.Remove(path); err != nil && runtime.GOOS == "windows" {
		_ = os.Chmod(path, 0o644)
		_ = os.Remove(path)
	}
}

// fileDigest returns the digest of a local file: from the digest cache
// when the file is unchanged since it was recorded, else by hashing it
// (and recording it).
func (c *Client) fileDigest(ctx context.Context, path string, fi fs.FileInfo) (digest.Digest, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if d, ok := c.cache.LookupDigest(abs, fi); ok {
		return d, nil
	}
	d, err := HashFile(ctx, abs, digest.SHA256)
	if err != nil {
		return "", err
	}
	_ = c.cache.StoreDigest(abs, fi, d)
	return d, nil
}

// HashFile streams a file through the digest, checking ctx between
// reads. Reading and hashing overlap (a reader goroutine fills buffers
// while the hash consumes the previous one): SHA-256 is the bottleneck of
// verifying a large model, and the copy out of the page cache then comes
// for free on a second core. Memory is three 4 MiB buffers.
func HashFile(ctx context.Context, path string, alg digest.Algorithm) (digest.Digest, error) {
	if !alg.Available() {
		return "", fmt.Errorf("digest algorithm %q is not available", alg)
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	const bufSize, nbuf = 4 << 20, 3
	free := make(chan []byte, nbuf)
	full := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, bufSize)
	}
	done := make(chan struct{})
	defer close(done)
	var readErr error
	go func() {
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-done:
				return
			}
			n, err := io.ReadFull(fh, b)
			if n > 0 {
				full <- b[:n]
			}
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return
			case err != nil:
				readErr = err
				return
			}
		}
	}()
	d := alg.Digester()
	for b := range full {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		d.Hash().Write(b)
		free <- b[:cap(b)]
	}
	// full is closed: the reader has returned and readErr is settled.
	if readErr != nil {
		return "", readErr
	}
	return d.Digest(), nil
}

// Adopt looks at the files already at the paths of an artifact under dir
// before anything is fetched: a file whose bytes are the layer's (hashed
// once, its digest recorded) becomes the cache's blob for it, linked (or
// copied, where links cannot be made) into the cache, so the pull that
// follows downloads nothing for it. It returns the paths adopted; a file
// that differs is left for the install, which moves it aside.
func (c *Client) Adopt(ctx context.Context, dir string, files []manifests.File) ([]string, error) {
	var adopted []string
	for _, f := range files {
		if manifests.ValidatePath(f.Path) != nil || c.cache.HasBlob(f.Digest, f.Size) {
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			continue
		}
		d, err := c.fileDigest(ctx, path, fi)
		if err != nil {
			if ctx.Err() != nil {
				return adopted, ctx.Err()
			}
			continue
		}
		if d != f.Digest {
			continue
		}
		tmp := filepath.Join(c.cache.Dir(), "tmp", "adopt-"+randomSuffix())
		if f.Size < linkThreshold || os.Link(path, tmp) != nil {
			// Small files are copied (their installs are copies too, and
			// addBlob makes a blob read-only); verified again as copied.
			if err := copyFile(path, tmp); err != nil {
				return adopted, fmt.Errorf("adopt %s: %w", path, err)
			}
			if got, err := HashFile(ctx, tmp, digest.SHA256); err != nil || got != f.Digest {
				os.Remove(tmp)
				continue
			}
		}
		if err := c.cache.addBlob(f.Digest, tmp); err != nil {
			os.Remove(tmp)
			return adopted, fmt.Errorf("adopt %s: %w", path, err)
		}
		if fi2, err := os.Lstat(path); err == nil {
			if abs, err := filepath.Abs(path); err == nil {
				_ = c.cache.StoreDigest(abs, fi2, f.Digest)
			}
		}
		adopted = append(adopted, path)
	}
	return adopted, nil
}

// ErrNotCached is returned by InstallCached when a blob of the artifact
// is not in the local cache.
var ErrNotCached = errors.New("not in the local cache")

// InstallCached installs an artifact whose manifest the caller holds
// (raw, checked against ref's digest) from the local cache alone, without
// contacting any registry: every blob must be in the cache, and every byte
// of it is hashed again before a file is switched. It installs like Pull
// (all or nothing, receipt) and reports every file as "cached".
func (c *Client) InstallCached(ctx context.Context, ref Reference, raw []byte, dir string) (*PullResult, error) {
	if ref.Digest == "" {
		return nil, fmt.Errorf("install %s from the cache: name a digest", ref)
	}
	if got := ref.Digest.Algorithm().FromBytes(raw); got != ref.Digest {
		return nil, fmt.Errorf("install %s from the cache: the manifest given is %s: %w", ref, got, ErrDigestMismatch)
	}
	var files []manifests.File
	if m, err := manifests.ParseManifest(raw); err == nil {
		files = m.Files
	} else {
		// An artifact another tool pushed: its raw layers are files too;
		// archive layers are unpacked by a pull, not from here.
		cls, cerr := manifests.Classify(raw, "", manifests.ClassifyOptions{})
		if cerr != nil {
			return nil, fmt.Errorf("install %s from the cache: %w", ref, err)
		}
		if cls.HasArchives() {
			return nil, fmt.Errorf("install %s from the cache: it has archive layers, which a pull unpacks: %w", ref, ErrNotCached)
		}
		files = cls.Files()
	}
	var missing []string
	for _, f := range files {
		if !c.cache.HasBlob(f.Digest, f.Size) {
			missing = append(missing, f.Path)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("install %s from the cache: %s %w", ref, strings.Join(missing, ", "), ErrNotCached)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	seen := map[digest.Digest]bool{}
	for _, f := range files {
		if seen[f.Digest] {
			continue
		}
		seen[f.Digest] = true
		g.Go(func() error {
			got, err := HashFile(gctx, c.cache.BlobPath(f.Digest), digest.SHA256)
			if err != nil {
				return fmt.Errorf("layer %s: read the cached blob: %w", f.Path, err)
			}
			if got != f.Digest {
				// Dropped so that the next online sync fetches it again.
				os.Remove(c.cache.BlobPath(f.Digest))
				return fmt.Errorf("layer %s: the cached blob is %s, want %s: %w", f.Path, got, f.Digest, ErrDigestMismatch)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("install %s from the cache: %w", ref, err)
	}
	return c.installFiles(ctx, ref, ref.Digest, files, dir, nil, nil)
}

// installFiles is the end of every install (Pull's and InstallCached's):
// the files, then the receipt, all or nothing.
func (c *Client) installFiles(ctx context.Context, ref Reference, d digest.Digest, files []manifests.File, dir string, transferred []int64, arch *archiveSet) (*PullResult, error) {
	res := &PullResult{Reference: ref.String(), Digest: d}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	res.Dir = abs
	tx, err := c.install(ctx, abs, files, arch)
	if err != nil {
		return nil, fmt.Errorf("pull %s: install into %s: %w", ref, dir, err)
	}
	receipt := Receipt{Reference: ref.String(), Digest: d, InstalledAt: time.Now().UTC()}
	for i, f := range files {
		var n int64
		if transferred != nil {
			n = transferred[i]
		}
		st := "downloaded"
		if n == 0 && f.Size > 0 {
			st = "cached"
		}
		res.Files = append(res.Files, FileResult{Path: f.Path, Digest: f.Digest, Size: f.Size, Status: st, Transferred: n})
		res.Size += f.Size
		res.Transferred += n
		receipt.Files = append(receipt.Files, ReceiptFile{Path: f.Path, Digest: f.Digest, Size: f.Size})
	}
	if arch != nil {
		res.Transferred += arch.transferred
		for _, f := range arch.files {
			res.Files = append(res.Files, FileResult{Path: f.Path, Digest: f.Digest, Size: f.Size, Status: "unpacked"})
			res.Size += f.Size
			receipt.Files = append(receipt.Files, ReceiptFile{Path: f.Path, Digest: f.Digest, Size: f.Size})
		}
	}
	res.Receipt = filepath.Join(abs, filepath.FromSlash(ReceiptPath))
	if err := tx.writeReceipt(abs, &receipt); err != nil {
		tx.rollback()
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	tx.finish()
	res.Kept = tx.Kept
	return res, nil
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
