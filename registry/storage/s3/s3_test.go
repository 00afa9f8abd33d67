package s3_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
	"github.com/modelctl/modelctl/registry/storage/storagetest"
)

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t-" + hex.EncodeToString(b[:])
}

func testConfig(srv *s3test.Server) s3.Config {
	return s3.Config{
		Bucket:    srv.Bucket,
		Prefix:    randomPrefix(),
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		// The smallest parts S3 allows, so that multi-part writes stay
		// small in tests.
		PartSize:     s3.MinPartSize,
		CopyPartSize: 2 * s3.MinPartSize,
	}
}

func open(t *testing.T, cfg s3.Config) *s3.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The shared driver suite on versitygw, each subtest under its own prefix
// of one bucket.
func TestDriverSuite(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, storagetest.Config{
		New: func(t *testing.T) storage.Driver { return open(t, testConfig(srv)) },
		Reopen: func(t *testing.T, d storage.Driver) storage.Driver {
			return open(t, d.(*s3.Driver).Config())
		},
	})
}

// The tag index the Store keeps beside the tag links, with two drivers on
// one bucket as two registries would open it.
func TestTagIndex(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.TagIndex(t, storagetest.Config{
		New: func(t *testing.T) storage.Driver { return open(t, testConfig(srv)) },
		Reopen: func(t *testing.T, d storage.Driver) storage.Driver {
			return open(t, d.(*s3.Driver).Config())
		},
	})
}

// The suite again at the bucket's root, where keys have no prefix.
func TestDriverSuiteBucketRoot(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, storagetest.Config{
		New: func(t *testing.T) storage.Driver {
			cfg := testConfig(srv)
			cfg.Bucket = srv.MakeBucket(t)
			cfg.Prefix = ""
			return open(t, cfg)
		},
		Reopen: func(t *testing.T, d storage.Driver) storage.Driver {
			return open(t, d.(*s3.Driver).Config())
		},
	})
}

// Uploads waiting for bytes hold no large buffer (and no part buffer: parts
// are spooled to disk); fast ones share the budget.
func TestUploadMemory(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.UploadMemory(t, func(t *testing.T) storage.Driver { return open(t, testConfig(srv)) })
}
