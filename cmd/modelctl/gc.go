package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

func init() { register(newGCCmd) }

type gcOptions struct {
	serve  serveOptions
	grace  time.Duration
	dryRun bool
	json   bool
}

func newGCCmd() *cobra.Command {
	o := &gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Free the space of blobs no repository references any more",
		Long: `Deleting blobs, manifests and tags only unlinks them from their repository; gc removes
the content nothing links to any more. It is safe to run while the registry serves: content
younger than --grace is kept, since an upload finishing right now may not have linked it yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGC(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.serve.root, "root", "./data/registry", "filesystem storage directory")
	f.StringVar(&o.serve.storageURL, "storage", "", "s3://BUCKET/PREFIX to collect in S3 instead of --root")
	f.StringVar(&o.serve.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL")
	f.StringVar(&o.serve.s3Region, "s3-region", "", "S3 region")
	addS3CredentialFlags(cmd, &o.serve.s3Creds)
	f.DurationVar(&o.grace, "grace", time.Hour, "keep unreferenced content younger than this")
	f.BoolVar(&o.dryRun, "dry-run", false, "report what would be deleted, delete nothing")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

func runGC(cmd *cobra.Command, o *gcOptions) error {
	ctx := cmd.Context()
	var drv storage.Driver
	var err error
	if o.serve.storageURL != "" {
		if !strings.HasPrefix(o.serve.storageURL, "s3://") {
			return fmt.Errorf("--storage %q: want s3://BUCKET/PREFIX", o.serve.storageURL)
		}
		o.serve.uploadMaxAge = 24 * time.Hour
		drv, err = openS3(ctx, &o.serve)
	} else {
		drv, err = filesystem.New(o.serve.root)
	}
	if err != nil {
		return err
	}
	res, err := storage.NewStore(drv).GarbageCollect(ctx, o.grace, o.dryRun)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.json {
		return json.NewEncoder(out).Encode(res)
	}
	verb := "deleted"
	if o.dryRun {
		verb = "would delete"
	}
	for _, d := range res.Deleted {
		fmt.Fprintf(out, "%s %s\n", verb, d)
	}
	fmt.Fprintf(out, "%s %d blobs (%d bytes); kept %d referenced, %d younger than %s\n", verb, len(res.Deleted), res.BytesFreed, res.Kept, res.Young, o.grace)
	return nil
}
