package pin

import (
	"os"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// A host that synced before the pin history was kept rolls back to the
// most recent other install recorded in its pins directory.
func TestLatestOtherRecordWithoutHistory(t *testing.T) {
	root := t.TempDir()
	var ds []digest.Digest
	for i, content := range []string{"v1", "v2", "v3"} {
		b := []byte(content)
		art, err := manifests.Pack([]manifests.File{{Path: "m.onnx", MediaType: manifests.LayerMediaType("m.onnx"), Digest: digest.FromBytes(b), Size: int64(len(b))}}, manifests.PackOptions{Name: "m"})
		if err != nil {
			t.Fatal(err)
		}
		d := digest.FromBytes(art.Manifest)
		if err := writeRecord(root, d, art.Manifest); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(time.Duration(i-3) * time.Hour)
		if err := os.Chtimes(recordPath(root, d), when, when); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if got, ok := latestOtherRecord(root, ds[2]); !ok || got != ds[1] {
		t.Fatalf("from v3: %s %v, want v2", got, ok)
	}
	if got, ok := latestOtherRecord(root, ds[1]); !ok || got != ds[2] {
		t.Fatalf("from v2: %s %v, want v3 (the latest other)", got, ok)
	}
	// A record whose content is not its digest is not trusted.
	if err := os.WriteFile(recordPath(root, ds[1]), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := latestOtherRecord(root, ds[2]); !ok || got != ds[0] {
		t.Fatalf("with v2's record tampered: %s %v, want v1", got, ok)
	}
	if _, ok := latestOtherRecord(t.TempDir(), ds[0]); ok {
		t.Fatal("found a record in an empty root")
	}
}
