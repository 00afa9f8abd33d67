// Command unpackbench unpacks one archive layer file into a directory with
// internal/unpack (stage, verify, commit) and prints the seconds it took,
// for scripts/bench-unpack.sh:
//
//	unpackbench -layer model.tar.gz -compression gzip -digest sha256:… -o DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/unpack"
	"github.com/modelctl/modelctl/manifests"
)

func main() {
	layer := flag.String("layer", "", "the layer file (required)")
	comp := flag.String("compression", "gzip", "none, gzip or zstd")
	dgst := flag.String("digest", "", "the layer's digest (required)")
	diffID := flag.String("diffid", "", "the uncompressed tar's digest, checked when given")
	out := flag.String("o", "", "target directory (required)")
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *profile != "" {
		pf, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "unpackbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*layer, *comp, *dgst, *diffID, *out); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "unpackbench:", err)
		os.Exit(1)
	}
}

func run(layer, comp, dgst, diffID, out string) error {
	if layer == "" || dgst == "" || out == "" {
		return fmt.Errorf("-layer, -digest and -o are required")
	}
	c := manifests.Compression(comp)
	if comp == "none" {
		c = manifests.CompressionNone
	}
	start := time.Now()
	f, err := os.Open(layer)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	s, err := unpack.NewStage(out)
	if err != nil {
		return err
	}
	l := unpack.Layer{Name: layer, Digest: digest.Digest(dgst), Size: fi.Size(), Compression: c, DiffID: digest.Digest(diffID), UnpackedSize: -1}
	if _, err := s.Unpack(context.Background(), f, l, unpack.Limits{}); err != nil {
		return err
	}
	if err := s.Commit(); err != nil {
		return err
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	return nil
}
