// Command distpack writes a release archive (.zip or .tar.gz) that depends
// only on its inputs: entries sorted by name, one fixed modification time
// (the commit's, from -mtime), owner root, modes 0755 for executables and
// 0644 for the rest, and no timestamps or names in the compression headers.
// Two builds from one commit give byte-identical archives (`make dist`).
//
//	distpack -o modelctl-v1-linux-amd64.tar.gz -dir modelctl-v1-linux-amd64 \
//	    -mtime 1700000000 -x modelctl bin/modelctl=modelctl lib.so=lib.so
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type entry struct {
	src, name string
	mode      os.FileMode
	size      int64
}

func main() {
	out := flag.String("o", "", "archive to write: NAME.zip or NAME.tar.gz")
	dir := flag.String("dir", "", "top-level directory inside the archive")
	mtime := flag.Int64("mtime", 0, "modification time of every entry (Unix seconds, e.g. the commit time)")
	execs := flag.String("x", "", "comma-separated archive names that are executable")
	flag.Parse()
	if err := run(*out, *dir, time.Unix(*mtime, 0).UTC(), strings.Split(*execs, ","), flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "distpack:", err)
		os.Exit(1)
	}
}

func run(out, dir string, mtime time.Time, execs, specs []string) error {
	if out == "" || dir == "" || len(specs) == 0 {
		return fmt.Errorf("usage: distpack -o OUT.zip|OUT.tar.gz -dir NAME [-mtime SECONDS] [-x NAMES] SRC=NAME ...")
	}
	exec := map[string]bool{}
	for _, n := range execs {
		exec[n] = n != ""
	}
	var entries []entry
	for _, s := range specs {
		src, name, ok := strings.Cut(s, "=")
		if !ok || name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%q: want SRC=NAME with a clean relative NAME", s)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", src)
		}
		mode := os.FileMode(0o644)
		if exec[name] {
			mode = 0o755
		}
		entries = append(entries, entry{src: src, name: dir + "/" + name, mode: mode, size: fi.Size()})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	switch {
	case strings.HasSuffix(out, ".zip"):
		err = writeZip(tmp, entries, mtime)
	case strings.HasSuffix(out, ".tar.gz"):
		err = writeTarGz(tmp, entries, mtime)
	default:
		err = fmt.Errorf("%s: want a .zip or .tar.gz name", out)
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp.Name(), out)
}

func copyFile(dst io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(dst, f)
	return err
}

func writeZip(w io.Writer, entries []entry, mtime time.Time) error {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestCompression)
	})
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(e.mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if err := copyFile(fw, e.src); err != nil {
			return err
		}
	}
	return zw.Close()
}

func writeTarGz(w io.Writer, entries []entry, mtime time.Time) error {
	gw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gw)
	dirs := map[string]bool{}
	for _, e := range entries {
		// Every directory before what it holds, top down.
		parts := strings.Split(path.Dir(e.name), "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatUSTAR}); err != nil {
				return err
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: int64(e.mode), Size: e.size, ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := copyFile(tw, e.src); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gw.Close()
}
