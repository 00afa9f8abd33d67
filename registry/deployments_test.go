package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// deploymentStore is a filesystem store with one manifest in repository
// "r"; it returns the manifest's digest.
func deploymentStore(t *testing.T) (*storage.Store, digest.Digest) {
	t.Helper()
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewStore(drv)
	ctx := context.Background()
	cfg := []byte("{}")
	if _, err := st.PutBlob(ctx, "r", digest.FromBytes(cfg), bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[]}`, digest.FromBytes(cfg))
	info, err := st.PutManifest(ctx, storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: "application/vnd.oci.image.manifest.v1+json", Body: []byte(man)})
	if err != nil {
		t.Fatal(err)
	}
	return st, info.Digest
}

// Reports of one target racing each other all land: each replaces the
// latest with a compare-and-swap and keeps the ones before.
func TestRecordDeploymentConcurrent(t *testing.T) {
	st, d := deploymentStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := RecordDeployment(context.Background(), st, "r", "u", DeploymentReport{Host: "h", Config: "/c.yaml", Key: "k",
				Digest: d, Time: time.Now(), Status: fmt.Sprint("installed ", i)})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ds, err := Deployments(context.Background(), st, "r")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || len(ds[0].Previous) != n-1 || ds[0].Check != ResultNotRun || ds[0].User != "u" {
		t.Fatalf("after %d concurrent reports: %d targets, %+v", n, len(ds), ds)
	}
	seen := map[string]bool{ds[0].Status: true}
	for _, p := range ds[0].Previous {
		seen[p.Status] = true
	}
	if len(seen) != n {
		t.Fatalf("a report was lost: %v", seen)
	}
}

// A target keeps its latest report and the 15 before it.
func TestRecordDeploymentKeepsBoundedHistory(t *testing.T) {
	st, d := deploymentStore(t)
	for i := 0; i < deploymentHistoryKept+5; i++ {
		if _, err := RecordDeployment(context.Background(), st, "r", "", DeploymentReport{Host: "h", Config: "/c", Key: "k", Digest: d, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := Deployments(context.Background(), st, "r")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || len(ds[0].Previous) != deploymentHistoryKept-1 {
		t.Fatalf("history: %d targets, %d previous", len(ds), len(ds[0].Previous))
	}
}

// A repository holds at most MaxDeploymentTargets targets; the ones it
// has still take reports.
func TestRecordDeploymentTargetLimit(t *testing.T) {
	st, d := deploymentStore(t)
	ctx := context.Background()
	rep := DeploymentReport{Host: "h0", Config: "/c", Key: "k", Digest: d, Time: time.Now()}
	if _, err := RecordDeployment(ctx, st, "r", "", rep); err != nil {
		t.Fatal(err)
	}
	// Fill the rest of the directory as other targets would, eight
	// writes at a time (each is fsynced).
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				other := DeploymentReport{Host: fmt.Sprint("h", i), Config: "/c", Key: "k"}
				if err := st.Driver().PutContent(ctx, deploymentPath("r", other), []byte("{}")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 1; i < MaxDeploymentTargets; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	_, err := RecordDeployment(ctx, st, "r", "", DeploymentReport{Host: "new", Config: "/c", Key: "k", Digest: d, Time: time.Now()})
	if !errors.Is(err, errTooManyTargets) {
		t.Fatalf("a new target beyond the limit: %v", err)
	}
	if _, err := RecordDeployment(ctx, st, "r", "", rep); err != nil {
		t.Fatalf("a known target at the limit: %v", err)
	}
	// The placeholder objects are not reports and are skipped.
	ds, err := Deployments(ctx, st, "r")
	if err != nil || len(ds) != 1 || ds[0].Host != "h0" {
		t.Fatalf("deployments: %v %+v", err, ds)
	}
}
