package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// entry is one tar entry of a test archive.
type entry struct {
	name     string
	typeflag byte
	body     string
	size     int64 // when > 0 and body is empty: that many zero bytes
	link     string
	mode     int64
}

func reg(name, body string) entry { return entry{name: name, typeflag: tar.TypeReg, body: body} }
func dir(name string) entry       { return entry{name: name, typeflag: tar.TypeDir} }

func buildTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := int64(len(e.body))
		if e.body == "" && e.size > 0 {
			size = e.size
		}
		if e.typeflag != tar.TypeReg {
			size = 0
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typeflag, Size: size, Linkname: e.link, Mode: mode, Format: tar.FormatPAX}
		if e.typeflag == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.name, Typeflag: e.typeflag, PAXRecords: map[string]string{"comment": "git"}, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if e.body != "" {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		} else if size > 0 {
			if _, err := io.CopyN(tw, zeros{}, size); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func compress(t testing.TB, c manifests.Compression, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case manifests.CompressionNone:
		return b
	case manifests.CompressionGzip:
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
	case manifests.CompressionZstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
	}
	return buf.Bytes()
}

func layerFor(blob []byte, c manifests.Compression) Layer {
	return Layer{Name: "test layer", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Compression: c, UnpackedSize: -1}
}

// snapshot lists every path under dir with its content (or "<dir>").
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			out[rel] = "<dir>"
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "<link " + l + ">"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d paths, want %d: %v", what, len(got), len(want), keys(got))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s is %.40q, want %.40q", what, k, got[k], v)
		}
	}
}

func keys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("d", 120) + "/" + strings.Repeat("f", 120) + ".bin"
	weights := strings.Repeat("\x01\x02\x03weights", 300000) // 3 MiB: several buffers and a writeback step
	// Large enough for the write pipeline, with a tail that is not a
	// multiple of the direct I/O alignment.
	big := strings.Repeat("0123456789abcdef", (pipelinedFiles+writeChunk+4097)/16) + "tail"
	entries := []entry{
		dir("./"),
		dir("./models/"),
		reg("./models/model.onnx", "graph"),
		reg("models/model.onnx.data", weights),
		reg("models/big.bin", big),
		reg("empty.txt", ""),
		{name: "run.sh", typeflag: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		dir("datasets/empty"),
		reg(long, "long name"),
		{name: "pax_global_header", typeflag: tar.TypeXGlobalHeader},
	}
	want := map[string]string{
		"models/model.onnx": "graph", "models/model.onnx.data": weights, "models/big.bin": big, "empty.txt": "", "run.sh": "#!/bin/sh\n", long: "long name",
	}
	for _, c := range []manifests.Compression{manifests.CompressionNone, manifests.CompressionGzip, manifests.CompressionZstd} {
		t.Run("tar+"+string(c), func(t *testing.T) {
			raw := buildTar(t, entries...)
			blob := compress(t, c, raw)
			target := filepath.Join(t.TempDir(), "model")
			s, err := NewStage(target)
			if err != nil {
				t.Fatal(err)
			}
			l := layerFor(blob, c)
			if c != manifests.CompressionNone {
				l.DiffID = digest.FromBytes(raw)
			}
			files, err := s.Unpack(context.Background(), bytes.NewReader(blob), l, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("target exists before commit: %v", err)
			}
			if len(files) != len(want) {
				t.Fatalf("%d files, want %d", len(files), len(want))
			}
			for _, f := range files {
				body, ok := want[f.Path]
				if !ok || f.Size != int64(len(body)) || f.Digest != digest.FromString(body) {
					t.Errorf("file %+v: want %d bytes %s", f, len(body), digest.FromString(body))
				}
				if f.Executable != (f.Path == "run.sh") {
					t.Errorf("%s: executable %v", f.Path, f.Executable)
				}
			}
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			got := snapshot(t, target)
			for p, body := range want {
				if got[filepath.FromSlash(p)] != body {
					t.Errorf("%s: %d bytes installed, want %d", p, len(got[filepath.FromSlash(p)]), len(body))
				}
			}
			if got[filepath.Join("datasets", "empty")] != "<dir>" {
				t.Errorf("empty directory not installed: %v", keys(got))
			}
			if fi, err := os.Stat(filepath.Join(target, "run.sh")); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("run.sh not executable: %v %v", fi.Mode(), err)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".*unpack*")); len(left) != 0 {
				t.Errorf("stage left behind: %v", left)
			}
		})
	}
}

// TestStageInsideExistingTarget checks that into an existing target two
// layers install side by side, replacing a file already there, and that
// the reserved directory the stage used is gone afterwards.
func TestStageInsideExistingTarget(t *testing.T) {
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "model.onnx"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(target, "keep.txt"), []byte("keep"), 0o644)
	s, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Dir(), filepath.Join(target, manifests.ReservedDir)) {
		t.Errorf("stage %s is not in the target's reserved directory", s.Dir())
	}
	if err := s.Claim("raw.bin"); err != nil {
		t.Fatal(err)
	}
	a := compress(t, manifests.CompressionGzip, buildTar(t, reg("model.onnx", "new")))
	b := compress(t, manifests.CompressionZstd, buildTar(t, reg("data/d.csv", "1,2")))
	for _, blob := range [][]byte{a, b} {
		c := manifests.CompressionGzip
		if bytes.Equal(blob, b) {
			c = manifests.CompressionZstd
		}
		if _, err := s.Unpack(context.Background(), bytes.NewReader(blob), layerFor(blob, c), Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "target", snapshot(t, target), map[string]string{
		".": "<dir>", "model.onnx": "new", "keep.txt": "keep", "data": "<dir>", filepath.Join("data", "d.csv"): "1,2",
	})
	if len(s.Files()) != 2 {
		t.Errorf("stage files %v", s.Files())
	}
}

func TestHostileArchives(t *testing.T) {
	good := reg("model.onnx", "graph")
	bomb := compress(t, manifests.CompressionGzip, buildTar(t, entry{name: "bomb.bin", typeflag: tar.TypeReg, size: RatioSlack + 1<<20}))
	trailer := compress(t, manifests.CompressionGzip, append(buildTar(t, good), make([]byte, RatioSlack+1<<20)...))
	gz := compress(t, manifests.CompressionGzip, buildTar(t, good, reg("b.bin", strings.Repeat("x", 100000))))
	corrupt := append([]byte(nil), gz...)
	for i := len(corrupt) / 3; i < len(corrupt)/3+64; i++ {
		corrupt[i] ^= 0x5a
	}
	plain := buildTar(t, good)
	type tc struct {
		name  string
		blob  []byte
		comp  manifests.Compression
		layer func(*Layer)
		lim   Limits
		claim string
		want  string
	}
	tests := []tc{
		{name: "dot-dot", blob: buildTar(t, good, reg("../evil", "x")), want: `contains ".."`},
		{name: "dot-dot inside", blob: buildTar(t, reg("a/../../evil", "x")), want: "not clean"},
		{name: "absolute", blob: buildTar(t, reg("/etc/evil", "x")), want: "is absolute"},
		{name: "backslash", blob: buildTar(t, reg(`..\evil`, "x")), want: "backslash"},
		{name: "reserved directory", blob: buildTar(t, reg(".modelctl/receipt.json", "x")), want: "reserves"},
		{name: "escaping symlink", blob: buildTar(t, good, entry{name: "link", typeflag: tar.TypeSymlink, link: "../../etc/passwd"}), want: "symbolic link"},
		{name: "inner symlink", blob: buildTar(t, good, entry{name: "link", typeflag: tar.TypeSymlink, link: "model.onnx"}), want: "symbolic link"},
		{name: "hardlink", blob: buildTar(t, good, entry{name: "hl", typeflag: tar.TypeLink, link: "model.onnx"}), want: "hard link"},
		{name: "char device", blob: buildTar(t, entry{name: "null", typeflag: tar.TypeChar}), want: "device file"},
		{name: "block device", blob: buildTar(t, entry{name: "sda", typeflag: tar.TypeBlock}), want: "device file"},
		{name: "fifo", blob: buildTar(t, good, entry{name: "pipe", typeflag: tar.TypeFifo}), want: "fifo"},
		{name: "duplicate path", blob: buildTar(t, good, reg("model.onnx", "other")), want: "are the same file"},
		{name: "duplicate path by case", blob: buildTar(t, good, reg("MODEL.onnx", "other")), want: "are the same file"},
		{name: "file then directory", blob: buildTar(t, good, dir("model.onnx")), want: "is a directory, but"},
		{name: "file inside a file", blob: buildTar(t, good, reg("model.onnx/x", "y")), want: "which is a file"},
		{name: "path of a raw layer", blob: buildTar(t, reg("raw.bin", "x")), claim: "raw.bin", want: "are the same file"},
		{name: "declared-size overflow", blob: buildTar(t, good, reg("big.bin", strings.Repeat("x", 1000))),
			layer: func(l *Layer) { l.UnpackedSize = 100 }, want: "the size the manifest declares"},
		{name: "explicit limit", blob: buildTar(t, reg("big.bin", strings.Repeat("x", 1000))), lim: Limits{MaxBytes: 999}, want: "the limit given"},
		{name: "zip bomb", blob: bomb, comp: manifests.CompressionGzip, want: "the ratio guard"},
		{name: "zip bomb after the end of the archive", blob: trailer, comp: manifests.CompressionGzip, want: "larger than its bound"},
		{name: "too many entries", blob: buildTar(t, reg("a", "1"), reg("b", "2"), reg("c", "3")), lim: Limits{MaxEntries: 2}, want: "more than 2 entries"},
		{name: "truncated gzip", blob: gz[:len(gz)-200], comp: manifests.CompressionGzip, want: "refused"},
		{name: "truncated tar", blob: plain[:700], want: "refused"},
		{name: "tar cut after an entry", blob: plain[:1024], want: "end-of-archive marker"},
		{name: "tar cut inside a large file", comp: manifests.CompressionGzip, want: "unexpected EOF",
			blob: compress(t, manifests.CompressionGzip, buildTar(t, entry{name: "big", typeflag: tar.TypeReg, size: pipelinedFiles + writeChunk})[:pipelinedFiles])},
		{name: "header larger than an uncompressed layer", want: "the layer's own size",
			blob: buildTar(t, entry{name: "big", typeflag: tar.TypeReg, size: 1 << 20})[:4096]},
		{name: "tar with half its marker", blob: plain[:1536], want: "end-of-archive marker"},
		{name: "gzip of a tar cut after an entry", blob: compress(t, manifests.CompressionGzip, plain[:1024]), comp: manifests.CompressionGzip, want: "end-of-archive marker"},
		{name: "corrupt gzip", blob: corrupt, comp: manifests.CompressionGzip, want: "refused"},
		{name: "not gzip", blob: plain, comp: manifests.CompressionGzip, want: "not a gzip stream"},
		{name: "not zstd", blob: plain, comp: manifests.CompressionZstd, want: "refused"},
		{name: "digest mismatch", blob: gz, comp: manifests.CompressionGzip,
			layer: func(l *Layer) { l.Digest = digest.FromString("other") }, want: "digest mismatch"},
		{name: "uncompressed digest mismatch", blob: gz, comp: manifests.CompressionGzip,
			layer: func(l *Layer) { l.DiffID = digest.FromString("other") }, want: "uncompressed digest mismatch"},
		{name: "layer longer than declared", blob: gz, comp: manifests.CompressionGzip,
			layer: func(l *Layer) { l.Size -= 10 }, want: "longer than"},
		{name: "layer shorter than declared", blob: gz, comp: manifests.CompressionGzip,
			layer: func(l *Layer) { l.Size += 10 }, want: "ends after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			target := filepath.Join(root, "model")
			os.Mkdir(target, 0o755)
			os.WriteFile(filepath.Join(target, "model.onnx"), []byte("installed before"), 0o644)
			before := snapshot(t, root)
			s, err := NewStage(target)
			if err != nil {
				t.Fatal(err)
			}
			if tt.claim != "" {
				if err := s.Claim(tt.claim); err != nil {
					t.Fatal(err)
				}
			}
			l := layerFor(tt.blob, tt.comp)
			if tt.layer != nil {
				tt.layer(&l)
			}
			files, err := s.Unpack(context.Background(), bytes.NewReader(tt.blob), l, tt.lim)
			if err == nil {
				t.Fatalf("accepted: %+v", files)
			}
			t.Logf("refused: %v", err)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, manifests.ErrInvalid) {
				t.Errorf("not a refusal: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "test layer") {
				t.Errorf("error %q does not say %q and the layer", err, tt.want)
			}
			sameSnapshot(t, "after refusal", snapshot(t, root), before)
			if err := s.Commit(); err == nil {
				t.Errorf("a refused stage committed")
			}
		})
	}
}

// TestTargetIsALink checks that a target that is a symbolic link to a
// directory is installed into, through the link.
func TestTargetIsALink(t *testing.T) {
	root := t.TempDir()
	real, link := filepath.Join(root, "real"), filepath.Join(root, "link")
	os.Mkdir(real, 0o755)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	blob := buildTar(t, reg("m/a.txt", "a"))
	s, err := NewStage(link)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unpack(context.Background(), bytes.NewReader(blob), layerFor(blob, ""), Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "real target", snapshot(t, real), map[string]string{".": "<dir>", "m": "<dir>", filepath.Join("m", "a.txt"): "a"})
}

// TestRefusalIntoMissingTarget checks that a refused archive does not
// create the target.
func TestRefusalIntoMissingTarget(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, "new")
	s, err := NewStage(target)
	if err != nil {
		t.Fatal(err)
	}
	blob := buildTar(t, reg("a", "1"), reg("../b", "2"))
	if _, err := s.Unpack(context.Background(), bytes.NewReader(blob), layerFor(blob, ""), Limits{}); err == nil {
		t.Fatal("accepted")
	}
	sameSnapshot(t, "root", snapshot(t, root), map[string]string{".": "<dir>"})
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestReadFailureAndCancel checks that an I/O error is reported as one (not
// a refusal) and that cancelling stops the work; both discard the stage.
func TestReadFailureAndCancel(t *testing.T) {
	blob := compress(t, manifests.CompressionGzip, buildTar(t, reg("a.bin", strings.Repeat("abc", 1<<20))))
	ioErr := errors.New("connection reset")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		r    io.Reader
		want error
	}{
		{"read error", context.Background(), &failingReader{r: bytes.NewReader(blob), n: len(blob) / 2, err: ioErr}, ioErr},
		{"cancelled", ctx, bytes.NewReader(blob), context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := NewStage(filepath.Join(root, "m"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Unpack(tc.ctx, tc.r, layerFor(blob, manifests.CompressionGzip), Limits{})
			if !errors.Is(err, tc.want) || errors.Is(err, ErrRefused) {
				t.Fatalf("error %v, want %v and not a refusal", err, tc.want)
			}
			sameSnapshot(t, "root", snapshot(t, root), map[string]string{".": "<dir>"})
		})
	}
}

// TestCommitRefusesBadTarget checks that a target whose layout would make
// the install write through a link or over a directory is refused before
// anything moves.
func TestCommitRefusesBadTarget(t *testing.T) {
	blob := buildTar(t, reg("a.txt", "a"), reg("sub/b.txt", "b"))
	for _, tc := range []struct {
		name  string
		setup func(target, outside string)
		want  string
	}{
		{"directory where a file goes", func(target, _ string) { os.MkdirAll(filepath.Join(target, "a.txt"), 0o755) }, "is a directory"},
		{"symlink where a directory goes", func(target, outside string) { os.Symlink(outside, filepath.Join(target, "sub")) }, "symbolic link"},
		{"file where a directory goes", func(target, _ string) { os.WriteFile(filepath.Join(target, "sub"), nil, 0o644) }, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			target, outside := filepath.Join(root, "m"), filepath.Join(root, "outside")
			os.Mkdir(target, 0o755)
			os.Mkdir(outside, 0o755)
			tc.setup(target, outside)
			before := snapshot(t, root)
			s, err := NewStage(target)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Unpack(context.Background(), bytes.NewReader(blob), layerFor(blob, ""), Limits{}); err != nil {
				t.Fatal(err)
			}
			err = s.Commit()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("commit: %v, want %q", err, tc.want)
			}
			sameSnapshot(t, "after refused commit", snapshot(t, root), before)
		})
	}
}

// FuzzUnpack feeds arbitrary bytes as a layer (its digest matching) and
// checks that nothing panics, that a refusal leaves the target as it was,
// and that whatever is accepted lands inside the target as regular files
// with the digests reported.
func FuzzUnpack(f *testing.F) {
	f.Add(buildTar(f, reg("a", "1"), dir("d"), reg("d/b", "2")), uint8(0))
	f.Add(compress(f, manifests.CompressionGzip, buildTar(f, reg("./x/y", "z"))), uint8(1))
	f.Add(compress(f, manifests.CompressionZstd, buildTar(f, reg("m.onnx", "g"))), uint8(2))
	f.Add(buildTar(f, entry{name: "l", typeflag: tar.TypeSymlink, link: "../x"}), uint8(0))
	f.Fuzz(func(t *testing.T, blob []byte, c uint8) {
		comp := []manifests.Compression{manifests.CompressionNone, manifests.CompressionGzip, manifests.CompressionZstd}[c%3]
		root := t.TempDir()
		target := filepath.Join(root, "m")
		s, err := NewStage(target)
		if err != nil {
			t.Fatal(err)
		}
		files, err := s.Unpack(context.Background(), bytes.NewReader(blob), layerFor(blob, comp), Limits{MaxBytes: 1 << 20})
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("not a refusal: %v", err)
			}
			sameSnapshotT(t, snapshot(t, root), map[string]string{".": "<dir>"})
			return
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, fl := range files {
			p := filepath.Join(target, filepath.FromSlash(fl.Path))
			if !strings.HasPrefix(p, target+string(filepath.Separator)) {
				t.Fatalf("%q installed outside the target", fl.Path)
			}
			fi, err := os.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("%q: %v %v", fl.Path, fi, err)
			}
			b, _ := os.ReadFile(p)
			if sum := sha256.Sum256(b); fmt.Sprintf("sha256:%x", sum) != string(fl.Digest) {
				t.Fatalf("%q: digest differs from the report", fl.Path)
			}
		}
	})
}

func sameSnapshotT(t *testing.T, got, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target changed by a refused archive: %v", keys(got))
	}
}

// TestBadDescriptor checks that a layer described with a digest this
// package cannot check is refused before anything is read.
func TestBadDescriptor(t *testing.T) {
	blob := buildTar(t, reg("a", "1"))
	for _, l := range []Layer{
		{Name: "x", Digest: "nonsense", Size: int64(len(blob))},
		{Name: "x", Digest: digest.SHA512.FromBytes(blob), Size: int64(len(blob))},
		{Name: "x", Digest: digest.FromBytes(blob), Size: -1},
		{Name: "x", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Compression: manifests.CompressionGzip, DiffID: "md5:00"},
		{Name: "x", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Compression: "bzip2"},
	} {
		root := t.TempDir()
		s, err := NewStage(filepath.Join(root, "m"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Unpack(context.Background(), bytes.NewReader(blob), l, Limits{})
		if err == nil || errors.Is(err, ErrRefused) {
			t.Errorf("%+v: %v, want a descriptor error", l, err)
		}
		sameSnapshot(t, "root", snapshot(t, root), map[string]string{".": "<dir>"})
	}
}

// TestMaxBytesAcrossLayers checks that the explicit limit bounds all the
// archives of a stage together: archives each under it cannot add up.
func TestMaxBytesAcrossLayers(t *testing.T) {
	root := t.TempDir()
	s, err := NewStage(filepath.Join(root, "m"))
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxBytes: 1000}
	a := buildTar(t, reg("a.bin", strings.Repeat("a", 600)))
	b := buildTar(t, reg("b.bin", strings.Repeat("b", 600)))
	if _, err := s.Unpack(context.Background(), bytes.NewReader(a), layerFor(a, ""), lim); err != nil {
		t.Fatal(err)
	}
	_, err = s.Unpack(context.Background(), bytes.NewReader(b), layerFor(b, ""), lim)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "600 of them unpacked before") {
		t.Fatalf("second archive: %v", err)
	}
	sameSnapshot(t, "root", snapshot(t, root), map[string]string{".": "<dir>"})
}
