package model

import (
	"context"
	"fmt"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/signing"
)

// PullOptions describe a pull beyond where to install.
type PullOptions struct {
	// RequireSignature refuses ref unless it carries a valid signature by
	// one of SignatureKeys (PEM public key files).
	RequireSignature bool
	SignatureKeys    []string
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
	return c.Pull(ctx, ref, dir)
}
