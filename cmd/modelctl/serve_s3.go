package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
)

// s3CredentialFlags are static S3 credentials from the command line. The
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)
// or the shared credentials file are preferable: flags show up in ps.
type s3CredentialFlags struct {
	accessKey     string
	secretKeyFile string
}

func addS3CredentialFlags(cmd *cobra.Command, c *s3CredentialFlags) {
	f := cmd.Flags()
	f.StringVar(&c.accessKey, "s3-access-key", "", "S3 access key (default: $AWS_ACCESS_KEY_ID or the shared credentials file)")
	f.StringVar(&c.secretKeyFile, "s3-secret-key-file", "", "file holding the S3 secret key (default: $AWS_SECRET_ACCESS_KEY or the shared credentials file)")
}

// openS3 opens the S3 driver for --storage s3://BUCKET/PREFIX, checking the
// bucket and credentials now rather than at the first request.
func openS3(ctx context.Context, o *serveOptions) (storage.Driver, error) {
	var creds s3.Credentials
	if o.s3Creds.accessKey != "" || o.s3Creds.secretKeyFile != "" {
		if o.s3Creds.accessKey == "" || o.s3Creds.secretKeyFile == "" {
			return nil, fmt.Errorf("--s3-access-key and --s3-secret-key-file go together")
		}
		secret, err := os.ReadFile(o.s3Creds.secretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--s3-secret-key-file: %w", err)
		}
		creds = s3.Credentials{AccessKey: o.s3Creds.accessKey, SecretKey: strings.TrimSpace(string(secret))}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if o.s3SpoolDir != "" {
		// Refused now, not at the first upload.
		f, err := os.CreateTemp(o.s3SpoolDir, ".modelctl-spool-check-")
		if err != nil {
			return nil, fmt.Errorf("--s3-spool-dir: %w", err)
		}
		f.Close()
		os.Remove(f.Name())
	}
	bucket, prefix, err := s3.ParseURL(o.storageURL)
	if err != nil {
		return nil, err
	}
	d, err := s3.New(sctx, s3.Config{Bucket: bucket, Prefix: prefix, Endpoint: o.s3Endpoint, Region: o.s3Region,
		AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, SessionToken: creds.SessionToken, SpoolDir: o.s3SpoolDir})
	if err != nil {
		return nil, err
	}
	if !d.ConditionalWrites() {
		slog.Warn("this S3 store ignores conditional PUTs (If-Match/If-None-Match): tag moves from several registry processes at once can overwrite each other; run one writer, or see docs/s3.md")
	}
	return d, nil
}
