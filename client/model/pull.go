package model

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/signing"
)

// PullOptions describe a pull beyond where to install.
type PullOptions struct {
	// RequireSignature refuses ref unless it carries a valid signature by
	// one of SignatureKeys (PEM public key files).
	RequireSignature bool
	SignatureKeys    []string
	// Name names the file of an artifact's only layer when the layer has
	// none.
	Name string
}

// Pull installs ref into dir. With a signature required, the signature is
// checked before any file is written, and exactly the digest it verified
// is pulled, so a tag moved in between cannot slip other content in.
func Pull(ctx context.Context, c *client.Client, ref client.Reference, dir string, opts PullOptions) (*client.PullResult, error) {
	pol, err := signing.NewPolicy(opts.RequireSignature, opts.SignatureKeys...)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	d, err := signing.Require(ctx, ref.String(), pol, signing.Options{Open: c.OrasRepository})
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if d != "" {
		ref = ref.WithDigest(d)
	}
	res, err := c.PullWith(ctx, ref, dir, client.PullOptions{Name: opts.Name})
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, CheckExternalData(res.Dir, res.Files)...)
	return res, nil
}

// CheckExternalData reports the ONNX graphs among installed files whose
// external data files are missing or too short in dir: an artifact pushed
// by another tool may hold a graph without its data.
func CheckExternalData(dir string, files []client.FileResult) []string {
	var out []string
	for _, f := range files {
		if !strings.EqualFold(path.Ext(f.Path), ".onnx") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f, err := modelfile.Detect(p); err != nil || f != modelfile.FormatONNX {
			continue // not a graph: nothing to check
		}
		m, err := onnx.Open(p)
		if err != nil {
			// The reader checks the data files it opens.
			out = append(out, fmt.Sprintf("%s: %v: the model will not load", f.Path, err))
			continue
		}
		data, err := m.DataFiles()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", f.Path, err))
			continue
		}
		for _, d := range data {
			dp := filepath.Join(filepath.Dir(p), filepath.FromSlash(d.Path))
			st, err := os.Stat(dp)
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("%s references external data %s, which the artifact does not hold: the model will not load", f.Path, d.Path))
			case st.Size() < d.MinSize:
				out = append(out, fmt.Sprintf("%s needs %d bytes of %s, the artifact holds %d: the model will not load", f.Path, d.MinSize, d.Path, st.Size()))
			}
		}
	}
	return out
}
