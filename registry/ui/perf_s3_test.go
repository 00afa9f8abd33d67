//go:build !windows

package ui

import (
	"context"
	"testing"
	"time"

	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// (s3test starts versitygw, which the tests run on Linux only.)

// BenchmarkRepositoryPage1000TagsS3 measures the same pages over S3
// (versitygw), where a listing of the tags would cost a request per few
// objects and the tag index makes a view three requests. It runs the page
// once per iteration after one cold render (make bench-ui).
func BenchmarkRepositoryPage1000TagsS3(b *testing.B) {
	srv := s3test.Start(b)
	drv, err := s3.New(context.Background(), s3.Config{Bucket: srv.Bucket, Prefix: "ui", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	ts := newTestServerOn(b, drv, nil, nil)
	start := time.Now()
	fillRepository(b, ts, "bench/model", perfTags)
	b.Logf("stored %d versions on S3 in %s", perfTags, time.Since(start).Round(time.Millisecond))
	line, _ := measureRepositoryPage(b, ts, "S3 (versitygw)")
	line += "; " + measureWarmStart(b, ts)
	b.Log(line)
	url := ts.URL + "/ui/r/bench/model"
	c := ts.Client()
	b.ResetTimer()
	for b.Loop() {
		timeGet(b, c, url)
	}
}
