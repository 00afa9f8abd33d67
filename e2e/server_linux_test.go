package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// Problem 4, a full disk: the target is on a small filesystem and the
// cache is not, so every file is copied; the disk fills during the
// install of v2 and every file of v1 stays as it was.
func TestServerFullDiskLeavesTheTarget(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	repo := srv.Addr + "/sarai/audio"
	makeSrvModels(t, repo)
	h := newSrvHost(t)
	// A disk that fills during the install: the target is on a small
	// filesystem, the cache is not, so every file is copied.
	small := smallFilesystem(t, "9m")
	target := filepath.Join(small, "models")
	h.run("pull", repo+":v1", "-o", target)
	before := treeOf(t, target)
	_, errOut, code := h.try("pull", repo+":v2", "-o", target)
	if code == 0 || !strings.Contains(errOut, "no space left") {
		t.Fatalf("pull into a full disk: exit %d: %s", code, errOut)
	}
	if after := treeOf(t, target); after != before {
		t.Fatalf("a pull that filled the disk changed the target:\nbefore %s\nafter  %s", before, after)
	}

}
