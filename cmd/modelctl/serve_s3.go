package main

import (
	"context"
	"fmt"

	"github.com/modelctl/modelctl/registry/storage"
)

// openS3 opens the S3 driver for --storage s3://...
func openS3(ctx context.Context, o *serveOptions) (storage.Driver, error) {
	return nil, fmt.Errorf("--storage %s: S3 storage is not built yet", o.storageURL)
}
